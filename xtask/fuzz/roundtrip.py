import emporium_client  # noqa: F401
print("imported")
