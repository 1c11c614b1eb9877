"""One module per `filterlang` subcommand, each with `add_arguments(parser)` and `run(args)`."""
