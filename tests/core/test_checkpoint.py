"""core/checkpoint: what a checkpoint writes is what a resume reads back."""
import torch
from accelerate import Accelerator

from rlhf.core.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


def test_checkpoint_round_trip_keeps_the_callers_state_modules_and_optimizer(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = {"opt_steps": 7, "scores": [0.25, 0.5], "kl_ctl": {"value": 0.1}}
    save_checkpoint(tmp_path, 3, {"policy": model}, {"optimizer": optimizer, "scheduler": scheduler}, state,
                    Accelerator(cpu=True))
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step-000003"

    fresh = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    fresh_sched = torch.optim.lr_scheduler.LambdaLR(fresh_opt, lambda step: 0.5 ** step)
    loaded = load_checkpoint(ckpt, {"policy": fresh}, {"optimizer": fresh_opt, "scheduler": fresh_sched},
                             Accelerator(cpu=True))
    # the caller's state comes back under its own keys (a loop variable once overwrote it with the scheduler's)
    assert loaded == {"step": 3, **state}
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_sched.last_epoch == 1 and fresh_opt.param_groups[0]["lr"] == 0.05
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
