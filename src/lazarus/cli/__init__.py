"""The command line, the top layer: the argument tree, one run function per command (argv ->
options -> library -> render -> write), stdout, stderr and exit codes; the only code that
prints. May import every layer below (`api`, `render`, `analyses`, `results`, ...). The argument
tree names each run function as a "module:function" string, imported only when that command
runs, so that `lazarus --help` imports neither numpy nor torch."""
