"""Probe data (run from the repo root: python benchmarks/probes/scale_quantile/gen.py N_BATCHES SEED): icrl-v1's global embedding g and the target log(true max |R| / c) on prior MDPs' statistics."""
import sys, time, torch
import torch.nn.functional as F
torch.set_num_threads(1)
from icrl_agent.pretraining.config import load_config
import dataclasses
from icrl_agent.pretraining.prior import FAMILIES
from icrl_agent.pretraining.data import sample_training_batch
from icrl_agent.checkpoint import load_checkpoint
from icrl_agent.agent import shipped_weights_path

cfg = load_config("configs/default.yaml")
prior, spec = cfg.prior, dataclasses.replace(cfg.data, dagger_prob=0.0)  # no DAgger: no planner here
model, _ = load_checkpoint(shipped_weights_path())
model.eval()
cap = {}
model.scale_head.register_forward_hook(lambda m, i, o: cap.update(g=i[0].detach(), h=o.detach()))
n_batches, seed = int(sys.argv[1]), int(sys.argv[2])
import os; os.makedirs("benchmarks/probes/scale_quantile/out", exist_ok=True)
gen = torch.Generator().manual_seed(seed)
rows = {"g": [], "y": [], "family": [], "seen": [], "c": []}
weights = {f: 1.0 for f in FAMILIES}
t = time.time()
for b in range(n_batches):
    batch = sample_training_batch(32, weights, prior, spec, gen)
    with torch.no_grad():
        out = model(batch.stats, optimism=True)
    scale_norm = 1.0 + model.log_scale_gain.exp() * F.softplus(cap["h"].squeeze(-1))
    c = out.reward_scale / scale_norm
    mdps, stats = batch.mdps, batch.stats
    valid = mdps.state_mask[:, :, None] & mdps.action_mask[:, None, :]
    true_max = mdps.R.abs().masked_fill(~valid, 0.0).amax(dim=(1, 2))
    seen = ((stats.counts > 0) & (stats.reward_mean != 0)).flatten(1).any(dim=1) & (true_max > 0)
    rows["g"].append(cap["g"]); rows["y"].append((true_max.clamp_min(1e-12) / c).log())
    rows["family"].append(mdps.family); rows["seen"].append(seen); rows["c"].append(c)
    if b % 10 == 0:
        print(b, f"{time.time() - t:.0f}s", flush=True)
torch.save({k: torch.cat(v) for k, v in rows.items()}, f"benchmarks/probes/scale_quantile/out/data_{seed}.pt")
print("done", time.time() - t)
