"""Encoders (SSL frameworks and their kin), one file each, registered with ``@register_encoder``.

Every encoder subclasses :class:`bench.encoders.base.Encoder`; methods and auditors
use only that interface and the encoder's declared ``capabilities``.
"""
