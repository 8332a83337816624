import sys

from rlhf.cli import main

# Guarded: vLLM and torch's multiprocessing start workers with spawn, which imports this
# module again in the child (as __mp_main__); the child must not run the CLI a second time.
if __name__ == "__main__":
    sys.exit(main())
