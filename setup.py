"""Build the Cython extension modules of fastbpf.

Every ``fastbpf/*.pyx`` becomes an extension module. Nothing links against
libbpf: the extensions issue bpf(2), perf_event_open(2), mmap(2) and epoll
themselves, with the kernel ABI declared in ``fastbpf/_abi.pxd``.
"""

import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

HERE = os.path.dirname(os.path.abspath(__file__))

# Per-module compiler flags. _ring's record-copy loops must stay inline word
# loops: GCC would otherwise recognise them and call memcpy per record.
EXTRA_CFLAGS = {"fastbpf._ring": ["-fno-tree-loop-distribute-patterns"]}


def extensions():
    exts = []
    for path in sorted(glob.glob(os.path.join(HERE, "fastbpf", "*.pyx"))):
        name = "fastbpf." + os.path.splitext(os.path.basename(path))[0]
        exts.append(
            Extension(
                name,
                [os.path.relpath(path, HERE)],
                include_dirs=[numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                               ("_GNU_SOURCE", "1")],
                extra_compile_args=["-O2", "-Wno-unused-function"] + EXTRA_CFLAGS.get(name, []),
            )
        )
    return cythonize(
        exts,
        language_level=3,
        # Bounds checks and negative indexes stay on by default: with them
        # off, a Python-level lst[-1] in Cython code reads out of bounds.
        # Modules that index raw buffers in hot loops turn them off in their
        # own header.
        compiler_directives={"embedsignature": True},
        # Cython translates the modules in parallel (_core and _ring take
        # most of a build; `pip wheel` and `pip install` pass no -j).
        nthreads=_jobs(),
    )


def _jobs():
    return max(1, min(len(os.sched_getaffinity(0)), 8))


class build_ext(_build_ext):
    """build_ext that compiles the modules in parallel unless told ``-j``."""

    def finalize_options(self):
        if self.parallel is None:
            self.parallel = _jobs()
        super().finalize_options()


setup(ext_modules=extensions(), cmdclass={"build_ext": build_ext})
