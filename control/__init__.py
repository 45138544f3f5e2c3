"""Client-side operations on running workflows (start, list, query, signal, close one, close all),
shared by the command line, the lab and, injected by the worker, the scanner's activities.

Layer: above workflows (it references their definitions), below processes and the CLI."""
