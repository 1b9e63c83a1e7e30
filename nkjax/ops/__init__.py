"""Pure jnp ops, written from their definitions: convolution, pooling, layer sizes."""
