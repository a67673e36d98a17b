"""Set at interpreter exit (see ``health``): background upkeep stops."""

import threading

exiting = threading.Event()
