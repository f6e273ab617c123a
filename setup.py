"""The package list: akd's code packages, plus the data/ folder installed as `akd_data`."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["pipeline*", "stages*", "cache_schema*", "inference*"])
    + ["akd_data"],
    package_dir={"akd_data": "data"},
)
