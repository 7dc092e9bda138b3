"""Backbones f: image -> feature vector. Each file registers a factory with ``@register_backbone``.

A factory takes ``(in_channels: int, image_size: int)`` and returns an ``nn.Module``
with an ``out_dim`` attribute; its forward maps ``[B, C, H, W]`` to ``[B, out_dim]``.
"""
