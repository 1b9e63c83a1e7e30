"""Faster R-CNN's 4-step alternating training (Ren et al. 2015, section 3.2).

The paper's "practical" scheme trains the region proposal network and the
detector in turn, each step a run of its own:

1. the RPN (and backbone) on its own;
2. a new backbone and the detection head on step 1's proposals;
3. the RPN fine-tuned on step 2's backbone, which is frozen;
4. the head fine-tuned, backbone and RPN frozen.

`fit_alternating` runs the four steps through `nkjax.train.loop.fit`, each in
`workdir/<stage name>` (its checkpoints, metrics and summary), so a rerun
resumes each step from its own checkpoints and never mixes them.
"""

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nkjax.errors import UserError
from nkjax.train import checkpoint, writers
from nkjax.train import state as state_lib

# (name, train_rpn, train_head, frozen parameter subtrees, proposals from
# step 1's network). Step 3 starts from step 2's backbone and head and step
# 1's RPN; step 4 from step 3. Freezing the part whose loss is dropped keeps
# it bitwise unchanged whatever the optimizer's weight decay.
STAGES = (
  ('stage1_rpn', True, False, ('box_head',), False),
  ('stage2_detector', False, True, ('rpn_head',), True),
  ('stage3_rpn_finetune', True, False, ('backbone_net', 'box_head'), False),
  ('stage4_head_finetune', False, True, ('backbone_net', 'rpn_head'), False),
)


def stage_steps(steps: Sequence[int], *, num_steps: int) -> tuple[int, ...]:
  """The training steps of each of the 4 stages: `steps`, or with `()`
  `num_steps` split in four (the remainder to the last).

  >>> stage_steps((), num_steps=10)
  (2, 2, 2, 4)

  Raises:
    UserError: not 4 counts of at least 1.
  """
  if steps:
    out = tuple(int(v) for v in steps)
  else:
    q = num_steps // 4
    out = (q, q, q, num_steps - 3 * q)
  if len(out) != 4 or min(out) < 1:
    raise UserError(
      f'--config.stage_steps={out} must be 4 positive step counts (or () to '
      f'split --config.num_steps={num_steps} >= 4 in four)'
    )
  return out


def fit_alternating(
  *,
  state: Any,
  workdir: str,
  steps: Sequence[int],
  make_tx: Callable[[int, tuple[str, ...]], Any],
  train_step: Callable[..., Any],
  fit: Callable[..., Any],
  config: dict,
  summarize: Callable[[Any], dict],
) -> dict:
  """Trains a Faster R-CNN's `state` in the 4 `STAGES`.

  Args:
    state: the initial train state (its parameters start stages 1 and 2).
    workdir: each stage runs in `workdir/<stage name>`; `detect` and the
      launcher read step 4's (`workdir/stage4_head_finetune`).
    steps: the training steps of each stage (`stage_steps`).
    make_tx: `make_tx(num_steps, frozen) -> optimizer` of a stage; every
      stage's is built before the first trains, so a bad schedule stops first.
    train_step: the Faster R-CNN train step, with keywords `train_rpn`,
      `train_head` and `proposer` still free.
    fit: `nkjax.train.loop.fit` with the data, rng, mesh and cadences bound.
    config: the run's config dict, recorded with each stage's fields.
    summarize: the final evaluation (stage 4 only).

  Returns:
    The summary written to `workdir/summary.json`: step 4's figures,
    `training='alternating'`, `stages` (each step's record) and their
    summed `train_seconds`.
  """
  host = jax.device_get(state.params)  # fit donates its state: copy per stage
  dirs = [os.path.join(workdir, name) for name, *_ in STAGES]
  txs = [make_tx(n, stage[3]) for stage, n in zip(STAGES, steps, strict=True)]
  last: dict = {}

  def final(s):
    last.update(summarize(s))
    return last

  records = []
  for i, ((name, rpn, head, frozen, proposer), n) in enumerate(
    zip(STAGES, steps, strict=True)
  ):
    stage_state = state_lib.TrainState.create(
      apply_fn=state.apply_fn, params=jax.tree.map(jnp.asarray, host),
      tx=txs[i], batch_stats=state.batch_stats,
    )  # fmt: skip
    warm = None
    if i == 2:

      def warm(s):
        s = checkpoint.warm_start(s, source_workdir=dirs[1])
        return checkpoint.warm_start(
          s, source_workdir=dirs[0], source='params.rpn_head', target='params.rpn_head'
        )
    elif i == 3:
      warm = functools.partial(checkpoint.warm_start, source_workdir=dirs[2])
    source = (
      checkpoint.warm_start(stage_state, source_workdir=dirs[0]).params
      if proposer
      else None
    )
    step = functools.partial(
      train_step, train_rpn=rpn, train_head=head, proposer=proposer
    )
    result = fit(
      state=stage_state, train_step=step, num_steps=n, workdir=dirs[i],
      config={**config, 'stage': name, 'stage_num_steps': n, 'frozen': list(frozen)},
      frozen=source, warm_start=warm, summarize=final if i == 3 else None,
    )  # fmt: skip
    records.append({
      'stage': name, 'steps': n, 'train_rpn': rpn, 'train_head': head,
      'frozen': list(frozen), 'train_seconds': result.summary.get('train_seconds'),
      'train': result.summary.get('train'), 'workdir': dirs[i],
    })  # fmt: skip
  if not last:  # a rerun of finished stages: step 4's figures are on disk
    last.update(result.summary)
  summary = {
    **result.summary, **last, 'training': 'alternating', 'stages': records,
    'train_seconds': sum(r['train_seconds'] or 0.0 for r in records),
  }  # fmt: skip
  writers.write_summary(workdir, summary)
  return summary
