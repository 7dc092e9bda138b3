"""Unlearning methods, one file each. A new method is one file here with one
``@register_method`` decorator; the registry reads each module's registered names from its
source and imports a module on first use."""
