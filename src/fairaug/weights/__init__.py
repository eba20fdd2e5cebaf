"""Pretrained weights of the real profiles: fetched once on a connected machine into one cache
directory (`fairaug weights fetch`), checked offline (`fairaug weights check`), and required by the
code that loads them (`fairaug.weights.require`)."""
