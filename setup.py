"""Packaging for taxi_demand: the domain library and the pipeline package.

Ranges here are loose on purpose; requirements.lock pins the exact tree that
`make` installs.
"""

import setuptools

setuptools.setup(
    name="taxi-demand",
    version="0.1.0",
    description="Continuously trained taxi demand forecasts on TFX",
    python_requires=">=3.10,<3.11",
    packages=setuptools.find_packages(include=["taxi_demand", "taxi_demand.*",
                                               "pipeline", "pipeline.*"]),
    package_data={
        "taxi_demand": ["data/*.sql", "data/*.json"],
        "pipeline": ["schema/*.pbtxt"],
    },
    install_requires=[
        "tfx[kfp]>=1.16,<1.17",
        "tensorflow>=2.16,<2.17",
        "tensorflow-data-validation>=1.16,<1.17",
        "tensorflow-transform>=1.16,<1.17",
        "tensorflow-model-analysis>=0.47,<0.48",
        "ml-metadata>=1.16,<1.17",
        "apache-beam[gcp]>=2.53,<3",
        "dill",
        "duckdb>=1.1",
        "sqlglot>=25",
        "pyarrow>=10,<11",
        "numpy<2",
    ],
    entry_points={"console_scripts": ["taxi-demand=taxi_demand.cli:main"]},
)
