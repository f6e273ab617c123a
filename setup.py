"""The package list: akd's code packages, plus the data/ folder installed as `akd_data`."""
from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["pipeline*", "stages*", "cache_schema*", "inference*", "study*",
                                               "model_tools*", "common*"],
                                      exclude=["*__pycache__"])
    + ["akd_data"],
    package_dir={"akd_data": "data"},
)
