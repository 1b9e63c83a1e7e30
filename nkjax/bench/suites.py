"""Suites: the benchmarks run together, sized per platform, and their table."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class SuiteEntry:
  """One benchmark of a suite: `run`'s arguments for it."""

  name: str
  batch_size: int
  dtype: str = 'float32'
  steps_per_call: int = 1
  image_size: int | None = None


# On a GPU or TPU: bfloat16 where the model has it; several steps per call for
# models whose one step leaves the device idle between dispatches.
ACCELERATOR_SUITE = (
  SuiteEntry('resnet50', 256, 'bfloat16'),
  SuiteEntry('resnet20', 128, 'bfloat16', steps_per_call=10),
  SuiteEntry('lenet5', 256, 'bfloat16', steps_per_call=50),
  SuiteEntry('mlp', 256, steps_per_call=50),
  SuiteEntry('lstm_lm', 64, steps_per_call=5),
  SuiteEntry('dcgan', 128, steps_per_call=10),
)
# The same models sized for a few CPU cores, without ResNet-50: its set-up and
# compilation alone took minutes on 2 cores (`python -m nkjax.bench resnet50`
# times it on its own).
CPU_SUITE = (
  SuiteEntry('resnet20', 32),
  SuiteEntry('lenet5', 128),
  SuiteEntry('mlp', 256),
  SuiteEntry('lstm_lm', 16),
  SuiteEntry('dcgan', 32),
)
SUITES = ('accelerator',)


def suite_entries(suite: str, platform: str) -> tuple[SuiteEntry, ...]:
  """The entries of `suite` for a JAX platform ('cpu', 'gpu', 'tpu')."""
  from nkjax.errors import choose

  choose('suite', suite, SUITES)
  return CPU_SUITE if platform == 'cpu' else ACCELERATOR_SUITE


def format_table(rows: list[dict]) -> str:
  """The suite's figures as a Markdown table, one row per benchmark."""

  def num(value, digits=1):
    return '' if value is None else f'{value:,.{digits}f}'

  lines = [
    '| benchmark | batch | dtype | steps/call | examples/s | tokens/s | compile s '
    '| program MB | TFLOP/s | MFU |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for r in rows:
    shape = 'x'.join(map(str, r['input_shape'][:2]))
    name = (
      f'{r["benchmark"]} ({shape})' if len(r['input_shape']) == 3 else r['benchmark']
    )
    mfu = '' if r['mfu'] is None else f'{100 * r["mfu"]:.3g}%'
    rate = '' if r['tflop_per_second'] is None else f'{r["tflop_per_second"]:.4g}'
    lines.append(
      f'| {name} | {r["batch_size"]} | {r["dtype"]} | {r["steps_per_call"]} '
      f'| {num(r["examples_per_second"])} | {num(r.get("tokens_per_second"), 0)} '
      f'| {num(r["compile_seconds"])} | {num(r["program_memory_mb"])} '
      f'| {rate} | {mfu} |'
    )
  return '\n'.join(lines)
