"""geoguesser: where in the country were these four Street View photographs taken?"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geoguesser")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
