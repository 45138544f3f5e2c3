"""Pure domain arithmetic: ids, rounding, sizing, hedge gaps, edges. No I/O, no clocks."""
