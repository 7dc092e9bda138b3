"""Dataset loaders, one file each; every loader registers itself with ``@register_dataset``.

A loader is a class with two static methods:
``check(root, arg, download) -> str | None`` (None, or one line saying how to get the data)
and ``load(root, arg, download) -> ImageData``.
"""
