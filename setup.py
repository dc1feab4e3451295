"""Build of the one C extension, `transforms.ingest._cells` (everything else is in pyproject.toml).

It reads lxml's trees through lxml's public C API, so it is compiled against the headers of the
pinned lxml (build requirement, same version as the runtime one).
"""

import lxml
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "transforms.ingest._cells", ["transforms/ingest/_cells.pyx"], include_dirs=lxml.get_include()
            )
        ],
        compiler_directives={"language_level": "3"},
    )
)
