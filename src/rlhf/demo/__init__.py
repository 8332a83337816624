"""The demo: the embedded world (`rlhf.world`) run through the whole InstructGPT pipeline.

`rlhf.world` is the simulation: language, facts, users, labelers, gold standard, text in and
numbers out. This package is the orchestration around it, the part that touches models:

    pretrain.py   `rlhf pretrain`: the world's base models ("GPT-3")
    config.py     `rlhf demo`'s config
    run.py        `rlhf demo`: data -> pretrain -> SFT -> RM -> PPO / PPO-ptx -> measure -> report
    measure.py    sample every model, then the paper's section 4 measurements
    report.py     report.md and its plots
    keys.py       model names and the one way a metric key is built
"""
