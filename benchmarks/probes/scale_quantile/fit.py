"""Fit a quantile head on icrl-v1's global embedding: log(true r_max / c), pinball loss."""
import sys, torch
from icrl_agent.pretraining.prior import FAMILIES
torch.manual_seed(0); torch.set_num_threads(1)
files = sys.argv[1].split(",")
data = [torch.load(f, weights_only=True) for f in files]  # tensors only: never unpickle objects
d = {k: torch.cat([x[k] for x in data]) for k in data[0]}
keep = d["seen"]
g, y, fam = d["g"][keep].float().detach(), d["y"][keep].float().detach(), d["family"][keep]
n = len(y); perm = torch.randperm(n); tr, te = perm[: int(0.8 * n)], perm[int(0.8 * n):]
print("n", n, "y quantiles", torch.quantile(y, torch.tensor([0.1, 0.5, 0.9, 0.99])).tolist())
for tau in [float(t) for t in sys.argv[2].split(",")]:
    head = torch.nn.Sequential(torch.nn.Linear(g.shape[1], 64), torch.nn.GELU(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
    for it in range(3000):
        pred = head(g[tr]).squeeze(-1)
        e = y[tr] - pred
        loss = torch.maximum(tau * e, (tau - 1) * e).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        pred = head(g[te]).squeeze(-1)
    cover = (y[te] <= pred).float()
    print(f"tau {tau}: test coverage {cover.mean():.2f}, median pred {pred.median():.2f}")
    for i, f in enumerate(FAMILIES):
        m = fam[te] == i
        if m.any():
            print(f"   {f:10s} n={int(m.sum()):4d} cover {cover[m].mean():.2f}  y med {y[te][m].median():6.2f} p90 {torch.quantile(y[te][m], 0.9):6.2f}  pred med {pred[m].median():6.2f}  |err| {(pred[m]-y[te][m]).abs().mean():.2f}")
    torch.save(head.state_dict(), f"benchmarks/probes/scale_quantile/out/head_{tau}.pt")
