"""The file server: storage, connection handler, thread and process pools, supervisor."""
