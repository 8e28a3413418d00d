"""Build of the one compiled module, ``audit._speedups`` (verify's fast path).

Everything else is in pyproject.toml. The module is optional: without a C compiler,
the Python headers or OpenSSL's (Debian: gcc, python3-dev, libssl-dev; ``make setup``
installs them when run as root) the package still installs, and ``enclave audit
verify`` runs the same checks in Python, slower. The test suite requires the module.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "audit._speedups",
                ["audit/_speedups.pyx"],
                libraries=["crypto"],  # OpenSSL's libcrypto, as hashlib uses
                optional=True,
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
