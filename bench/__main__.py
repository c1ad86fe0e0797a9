import sys

if sys.argv[1:2] == ["all"]:  # `python -m bench all ...` (`make bench`): every part, one summary
    from .suite import main as all_main

    raise SystemExit(all_main(sys.argv[2:]))

if sys.argv[1:2] == ["custody"]:  # `python -m bench custody ...`: the custody benchmark
    from .custody_bench import main as custody_main

    raise SystemExit(custody_main(sys.argv[2:]))

if sys.argv[1:2] == ["remote"]:  # `python -m bench remote ...`: through a remote-like provider
    from .remote import main as remote_main

    raise SystemExit(remote_main(sys.argv[2:]))

if sys.argv[1:2] == ["analyst"]:  # `python -m bench analyst ...`: the analyst queries on 10M transfers
    import asyncio

    from .analyst_bench import main as analyst_main
    from .analyst_bench import parse_args as analyst_args

    asyncio.run(analyst_main(analyst_args(sys.argv[2:])))
    raise SystemExit(0)

from .cli import main

raise SystemExit(main())
