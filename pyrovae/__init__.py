"""pyrovae: deep latent-variable models, guides, relaxed-Bernoulli distributions and objectives for Pyro.

Importing the package registers pyrovae's settings with :mod:`pyro.settings` (see :mod:`pyrovae.settings`).
"""

from importlib.metadata import PackageNotFoundError, version

from pyrovae import settings  # noqa: F401  (registers pyrovae_check_data and pyrovae_register_modules)

try:
    __version__ = version("pyrovae")
except PackageNotFoundError:  # a checkout that is not installed
    __version__ = "0+unknown"
