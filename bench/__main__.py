import sys

if sys.argv[1:2] == ["custody"]:  # `python -m bench custody ...`: the custody benchmark
    from .custody_bench import main as custody_main

    raise SystemExit(custody_main(sys.argv[2:]))

from .cli import main

raise SystemExit(main())
