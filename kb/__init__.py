"""kbstack-wide tools that compose the three stacks (TAS, zIO, Strata)."""
