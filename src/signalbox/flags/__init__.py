"""Feature flags: declared in ``flags/*.yaml`` or code, switched at run time through the store."""
