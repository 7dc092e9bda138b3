"""Unlearning methods, one file each. A new method is one file here with one
``@register_method`` decorator; the registry imports every module of this package."""
