"""TOML config: flags win, a broken file names its line."""

import pytest

from aded_chat.config import Config, ConfigError, load_config


def test_missing_file_gives_defaults(tmp_path):
    assert load_config(tmp_path / "none.toml") == Config()


def test_values_are_read(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('n_ctx = 2048\nspeculative = false\nkv_cache = "q8_0"\nexact_greedy = false\n'
                 '[generation]\ntemperature = 1\nseed = 7\n')
    cfg = load_config(p)
    assert cfg.n_ctx == 2048 and cfg.speculative is False and cfg.kv_cache == "q8_0"
    assert Config().exact_greedy and not cfg.exact_greedy
    assert cfg.generation.temperature == 1.0 and cfg.generation.seed == 7


def test_syntax_error_names_the_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('n_ctx = 2048\ntheme = "x\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_config(p)


@pytest.mark.parametrize("text, needle", [
    ("colour = 1\n", "unknown key colour"),
    ("n_ctx = 'big'\n", "n_ctx"),
    ("[generation]\ntop_q = 1\n", "top_q"),
    ("threads = -2\n", "threads"),
    ("kv_cache = 'q4'\n", "kv_cache = 'q4' must be one of auto, f16, q8_0/f16, q8_0, bf16"),
    # out of range: the one validator that flags and the settings screen use too
    ("[generation]\ntemperature = nan\n", "finite"),
    ("[generation]\ntop_p = 2.0\n", "top_p"),
    ("[generation]\nrepeat_penalty = -1.0\n", "repeat_penalty"),
    ("[generation]\nmax_tokens = 0\n", "max_tokens"),
    ("threads = 100000\n", "threads"),
    ("n_ctx = -5\n", "n_ctx"),
    ("steady_batch = 1\n", "steady_batch must be 0 \\(off\\) or 2 to 63"),
])
def test_bad_keys_and_types(tmp_path, text, needle):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(p)


def test_the_default_kv_cache_is_exact_on_a_cpu_and_f16_on_a_gpu():
    from aded_chat.engine.llama.backend import resolve_kv_cache

    assert Config().kv_cache == "auto"
    assert resolve_kv_cache("auto", 0) == "q8_0/f16"
    assert resolve_kv_cache("auto", 999) == "f16"
    assert resolve_kv_cache("f16", 0) == "f16" and resolve_kv_cache("bf16", 999) == "bf16"
