"""Analysis: data coverage of facesets and measured quality of models and swaps."""
