"""The PPO tests' tiny world, for the GPU checks too."""

from tests.ppo.conftest import ppo_world  # noqa: F401
