"""Maps the repository's top-level stage folders into the `panst3r_splat` import namespace (see pyproject.toml)."""

from setuptools import find_packages, setup

FOLDERS = {"core": "panst3r_core", "splat": "splat", "pipeline": "pipeline", "configs": "configs"}

packages: list[str] = []
package_dir: dict[str, str] = {}
for sub, folder in FOLDERS.items():
    name = f"panst3r_splat.{sub}"
    packages.append(name)
    package_dir[name] = folder
    for child in find_packages(folder):
        packages.append(f"{name}.{child}")

setup(packages=packages, package_dir=package_dir)
