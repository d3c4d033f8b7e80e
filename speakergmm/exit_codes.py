"""Exit statuses of every ``speakergmm`` command (and of the batch reports that set them).

=====  =========================================================================
0      success
1      bad input: a missing or malformed data directory, trial list, score or model
       file, an unusable output directory, or an unexpected error (one line on stderr)
2      bad arguments (argparse's own status)
3      finished, but some inputs were skipped or some trials fell back (listed on
       stderr and in the outputs: ``report.json`` / ``results.json``)
130    interrupted (Ctrl-C); 143 terminated (SIGTERM); 141 the reader of stdout went away
=====  =========================================================================
"""

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

__all__ = ["EXIT_OK", "EXIT_INPUT", "EXIT_USAGE", "EXIT_PARTIAL", "EXIT_INTERRUPTED", "EXIT_BROKEN_PIPE"]
