"""Package discovery for setuptools (the metadata is in ``pyproject.toml``).

The shipped search spaces and device profiles stay at the top of the source tree and are
installed as the data packages ``automc.search_spaces`` and ``automc.hw_profiles``, so
``automc.resources`` finds them through ``importlib.resources`` in an editable install and
in a wheel alike. ``pyproject.toml`` cannot add packages outside the ``automc/`` folder to
the ones it discovers, hence this file.
"""

from setuptools import find_packages, setup

SHIPPED = {"automc.search_spaces": "search_spaces", "automc.hw_profiles": "hw_profiles"}

setup(
    packages=[*find_packages(include=["automc", "automc.*"]), *SHIPPED],
    package_dir=SHIPPED,
    package_data={"automc": ["py.typed"], **{package: ["*.yaml"] for package in SHIPPED}},
)
