"""The course's ops and nkjax's metrics on your own arrays.

  python examples/ops_and_metrics.py

An edge filter by `conv2d` (checked against SciPy), the course's 2x2 max
pooling, batch metrics merged as `(sum, count)` pairs, and the Frechet
distance between two feature sets.
"""

import jax.numpy as jnp
import numpy as np
import scipy.signal

from nkjax import metrics
from nkjax.data import digits
from nkjax.ops import conv2d, pool2d

# A vertical-edge (Sobel) filter over 16 digits: [n, 8, 8, 1] -> [n, 6, 6, 1].
images = digits.load('test')['image'][:16]
sobel = jnp.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
edges = conv2d(jnp.asarray(images), sobel[:, :, None, None])
# conv2d is a cross-correlation, as in every deep-learning library.
reference = np.stack(
  [scipy.signal.correlate2d(im[..., 0], sobel, 'valid') for im in images]
)
np.testing.assert_allclose(edges[..., 0], reference, atol=1e-5)

# Max pooling keeps the strongest response in each 2x2 window: 6x6 -> 3x3.
pooled = pool2d(jnp.abs(edges), window=2, kind='max')
print('edge maps', edges.shape, 'pooled', pooled.shape)
assert pooled.shape == (16, 3, 3, 1)

# Metrics of your own predictions, batch by batch: padding (mask 0) never counts.
labels = np.array([0, 1, 1, 2, 2, 2, 0, 0])
predictions = np.array([0, 1, 2, 2, 2, 0, 0, 0])
mask = np.array([1, 1, 1, 1, 1, 1, 0, 0])  # the last two are padding
batches = [
  {'accuracy': metrics.mean(jnp.asarray(predictions[i : i + 4] == labels[i : i + 4]),
                            jnp.asarray(mask[i : i + 4]))}
  for i in (0, 4)
]  # fmt: skip
accuracy = metrics.compute(metrics.merge(batches))['accuracy']
print(f'accuracy over the 6 real examples: {accuracy:.4f}')
assert accuracy == 4 / 6

# Frechet distance between Gaussian fits of two feature sets: shifting every
# feature by 1 in 3 dimensions costs |shift|^2 = 3 and nothing else.
features = np.random.default_rng(0).normal(size=(1000, 3))
distance = metrics.frechet_distance(features, features + 1.0)
print(f'Frechet distance {distance:.6f}')
assert abs(distance - 3.0) < 1e-6
