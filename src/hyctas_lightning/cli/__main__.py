"""``python -m hyctas_lightning.cli``, the same as the ``hyctas`` console script."""
import sys

from . import main

sys.exit(main())
