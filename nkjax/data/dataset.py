"""The one dataset record that every task returns.

Image classification, text, super-resolution pairs and detection targets all come
out as a `Dataset`: callables that make batch iterators, plus the sizes a run
reports. A batch is a dict of numpy arrays whose leading axis is this process's
rows of the global batch. Eval batches are padded to one shape and carry `mask`
`[batch]` (1 real example, 0 padding); the key `mask` is reserved for that.
Per-example variable-size targets are padded under their own names (detection:
`boxes` `[batch, max_boxes, 4]` with `box_mask` `[batch, max_boxes]`).
"""

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset ready for `nkjax.train.loop.fit`.

  Attributes:
    name: the dataset's name, as the user gave it.
    train_batches: `start_step -> endless iterator` of training batches; batch
      `s` depends only on the seed and `s`, so a resumed run sees the same data.
    eval_batches: `() -> iterator` of one padded pass over the test split.
    train_eval_batches: `() -> iterator` of one padded, unshuffled pass over the
      training examples (training accuracy), or None where it makes no sense.
    num_train, num_test: example counts; None where the source does not say.
    num_classes: classes of a classification or detection task (the vocabulary
      size of a language model); None for regression tasks such as SR.
    class_names: display names of the classes, where the source has them.
    example_shape: the shape of one model input (`[h, w, c]` for images).
    train_arrays: the whole training split as arrays in memory, where it is
      (the embedded digits); None for streamed sources.
    train_indices: `start_step -> endless iterator` of the example indices of
      each of this process's training batches, in the order `train_batches`
      yields them (`train_batches(s)` is `train_arrays` at these indices), for
      a training set kept on the device; None with `train_arrays`.
  """

  name: str
  train_batches: Callable[[int], Iterator[Batch]]
  eval_batches: Callable[[], Iterator[Batch]]
  train_eval_batches: Callable[[], Iterator[Batch]] | None = None
  num_train: int | None = None
  num_test: int | None = None
  num_classes: int | None = None
  class_names: tuple[str, ...] | None = None
  example_shape: tuple[int, ...] | None = None
  train_arrays: Batch | None = None
  train_indices: Callable[[int], Iterator[np.ndarray]] | None = None
