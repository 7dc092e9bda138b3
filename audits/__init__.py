"""Auditors, one file each, registered with ``@register_auditor``; the registry imports them all."""
