"""The eager PyTorch equivalent of a benchmark's step, timed the same way."""

from collections.abc import Callable

from nkjax import launch
from nkjax.bench.measure import _random_batch, _throughput, _time
from nkjax.bench.registry import BENCHMARKS


def _torch_steps(name: str, batch_size: int) -> Callable[[int], None]:
  """`run_steps(n)`: n Adam steps of benchmark `name`'s eager PyTorch equivalent
  on the CPU, a thread per core this process may use."""
  import torch

  from nkjax.errors import UserError

  bench = BENCHMARKS[name]
  if bench.torch_model is None:
    raise UserError(
      f'benchmark {name} has no PyTorch equivalent; those with one: {", ".join(n for n, b in BENCHMARKS.items() if b.torch_model)}'
    )
  torch.set_num_threads(launch.cpu_cores())
  torch.manual_seed(0)
  model = bench.torch_model()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  data = _random_batch(bench, batch_size)
  if bench.seq_len:  # next-token prediction over every position
    tokens = torch.from_numpy(data['tokens']).long()
    x, y = tokens[:, :-1], tokens[:, 1:].reshape(-1)
  else:
    x = (
      torch.from_numpy(data['image']).permute(0, 3, 1, 2).contiguous()
    )  # NCHW, PyTorch's fast layout
    y = torch.from_numpy(data['label']).long()

  def run_steps(n):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      logits = model(x)
      logits = logits.reshape(-1, logits.shape[-1])
      torch.nn.functional.cross_entropy(logits, y).backward()
      opt.step()

  return run_steps


def run_torch(
  name: str,
  *,
  batch_size: int | None = None,
  steps: int = 10,
  repeats: int = 5,
  warmup: int = 3,
) -> dict:
  """The same step in eager PyTorch on the CPU (a thread per core this process
  may use), for comparison."""
  import torch

  batch_size = batch_size or BENCHMARKS[name].batch_size
  run_steps = _torch_steps(name, batch_size)
  times = _time(run_steps, steps=steps, repeats=repeats, warmup=warmup)
  return {
    'benchmark': name,
    'framework': f'torch {torch.__version__} eager',
    'batch_size': batch_size,
    'threads': torch.get_num_threads(),
    **_throughput(times, steps, batch_size, BENCHMARKS[name].seq_len),
    'timing': f'median of {repeats} runs of {steps} steps after {warmup} warm-up steps',
  }
