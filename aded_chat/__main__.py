import sys

from aded_chat.cli import main

sys.exit(main())
