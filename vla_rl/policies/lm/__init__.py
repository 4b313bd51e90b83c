"""Text language-model policy: configuration, tokenizer and modeling files (one folder per policy)."""
