import acme_npu_sdk  # noqa: F401 - the vendor SDK this plug-in needs, not installed here
