"""Search spaces shipped with automc (data files, found by ``automc.resources.find_space``)."""
