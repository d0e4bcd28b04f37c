"""Device profiles and energy tables shipped with automc (data files, found by
``automc.resources.find_profile``)."""
