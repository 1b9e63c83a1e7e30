"""Pure jnp ops, written from their definitions: convolution, pooling, layer sizes,
and the detection toolkit (boxes and NMS, anchors, RoI pooling, matching)."""
