"""Pure ensemble logic: keywords, parsing, breaker, downshift tree, cache TTL, formula, validation, config."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from artisan_common.catalog import IngredientCatalog
from artisan_common.ifra import check_formula
from artisan_ensemble.ensemble.admission import AdmissionController, OverloadedError
from artisan_ensemble.ensemble.breaker import BreakerState, CircuitBreaker
from artisan_ensemble.ensemble.brief import NOTE_FAMILIES, Brief
from artisan_ensemble.ensemble.cache import ResponseCache, adaptive_ttl, cache_key
from artisan_ensemble.ensemble.config import PinConfig, resolve_config
from artisan_ensemble.ensemble.downshift import plan_route
from artisan_ensemble.ensemble.formula import (
    brief_features,
    concentration_for,
    feature_size,
    heuristic_formula,
    project_to_ifra,
)
from artisan_ensemble.ensemble.hints import template_hints
from artisan_ensemble.ensemble.keywords import KOREAN_KEYWORDS, detect_language, keyword_parse, normalize_text
from artisan_ensemble.ensemble.parsing import ParseFailure, parse_brief, parse_string_list
from artisan_ensemble.ensemble.prompts import brief_prompt, creative_prompt, validator_prompt
from artisan_ensemble.ensemble.validation import (
    ValidationResult,
    parse_validator_output,
    validate_brief,
    with_formula_check,
)

from .conftest import FakeClock

REPO = Path(__file__).resolve().parents[2]

# ---- keywords --------------------------------------------------------------------------------------


def test_korean_dictionary_has_at_least_40_entries_covering_the_seed_terms() -> None:
    assert len(KOREAN_KEYWORDS) >= 40
    assert KOREAN_KEYWORDS["상큼한"].families.keys() >= {"citrus", "fresh"}
    assert "floral" in KOREAN_KEYWORDS["꽃향기"].families
    assert "woody" in KOREAN_KEYWORDS["우디한"].families


@pytest.mark.parametrize(
    ("text", "language", "families", "style"),
    [
        ("상큼한 꽃향기가 나는 향수", "ko", {"citrus", "fresh", "floral"}, "citrus"),
        ("우디한 숲 느낌, 은은한 향", "ko", {"woody", "green"}, "woody"),
        ("A fresh citrus scent with a woody base", "en", {"fresh", "citrus", "woody"}, "citrus"),
        ("warm vanilla and cinnamon", "en", {"amber", "gourmand", "spicy"}, "oriental"),
    ],
)
def test_keyword_parse_builds_a_valid_brief(text: str, language: str, families: set[str], style: str) -> None:
    match = keyword_parse(text)
    assert match.brief.language == language
    assert families <= set(match.brief.note_families)
    assert match.brief.style == style
    assert keyword_parse(text) == match  # deterministic


def test_intensity_words_move_intensity_both_ways() -> None:
    assert (
        keyword_parse("은은한 꽃향기").brief.intensity < 0.5 < keyword_parse("강렬한 꽃향기").brief.intensity
    )
    assert keyword_parse("a light rose").brief.intensity < keyword_parse("an intense rose").brief.intensity


def test_text_without_keywords_still_gets_a_brief() -> None:
    brief = keyword_parse("xyzzy").brief
    assert brief.note_families
    assert 0 <= brief.intensity <= 1


def test_language_detection_and_normalization() -> None:
    assert detect_language("상큼한 향수 please") == "ko"
    assert detect_language("fresh scent") == "en"
    assert normalize_text("  Fresh   CITRUS ") == "fresh citrus"


def test_brief_families_equal_the_catalog_families(catalog: IngredientCatalog) -> None:
    assert set(NOTE_FAMILIES) == set(catalog.families)


# ---- parsing ---------------------------------------------------------------------------------------

VALID = {"style": "woody", "intensity": 0.7, "complexity": 0.3, "noteFamilies": {"woody": 0.9}}


@pytest.mark.parametrize(
    "output",
    [
        json.dumps(VALID),
        "Sure! Here it is: " + json.dumps(VALID) + " hope this helps",
        "{'style': 'woody', 'intensity': 0.7, 'complexity': 0.3, 'noteFamilies': {'woody': 0.9},}",
        '{"style": "woody", "intensity": 0.7, "complexity": 0.3, "noteFamilies": {"woody": 0.9}',
        '{"style": "Woody", "intensity": 0.7, "complexity": 0.3, "families": ["woody"]}',
    ],
)
def test_parse_brief_extracts_and_repairs(output: str) -> None:
    brief = parse_brief(output, "en")
    assert isinstance(brief, Brief)
    assert brief.style == "woody"
    assert "woody" in brief.note_families


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ("\x00\x17garbage bytes", "no JSON object"),
        ('{"style": "banana", "intensity": 0.5, "complexity": 0.5, "noteFamilies": {"woody": 1}}', "style"),
        ('{"style": "woody", "intensity": 7, "complexity": 0.5, "noteFamilies": {"woody": 1}}', "intensity"),
        ('{"style": "woody", "intensity": 0.5, "complexity": 0.5, "noteFamilies": {"cheese": 1}}', "cheese"),
        ("{:::}", "repaired"),
    ],
)
def test_parse_brief_failures_name_the_problem(output: str, reason: str) -> None:
    result = parse_brief(output, "en")
    assert isinstance(result, ParseFailure)
    assert reason in result.reason


def test_parse_string_list_requires_enough_clean_items() -> None:
    good = json.dumps(["one hint", "two hint", "three hint", "four hint", "five hint", "six hint"])
    assert parse_string_list(good, 5, 8) == json.loads(good)
    assert parse_string_list('["one", "two"]', 5, 8) is None
    assert parse_string_list("no list here", 5, 8) is None


# ---- breaker ---------------------------------------------------------------------------------------


def _breaker(clock: FakeClock, **kwargs: float) -> CircuitBreaker:
    options: dict[str, float] = {"failure_threshold": 3, "hold_seconds": 300, "probe_timeout_seconds": 10}
    options.update(kwargs)
    return CircuitBreaker("primary", clock=clock, window=10, min_calls=6, failure_rate=0.5, **options)  # type: ignore[arg-type]


def test_breaker_opens_on_consecutive_failures_and_recovers_through_one_probe(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.try_acquire()
    assert breaker.retry_after() == pytest.approx(300)
    clock.advance(299)
    assert not breaker.available()
    clock.advance(1)
    assert breaker.available()
    assert breaker.try_acquire()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.try_acquire()  # only one probe at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.try_acquire()


def test_breaker_failed_probe_reopens_and_restarts_the_hold(clock: FakeClock) -> None:
    breaker = _breaker(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(300)
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(300)


def test_breaker_hung_probe_times_out(clock: FakeClock) -> None:
    breaker = _breaker(clock, failure_threshold=1)
    breaker.record_failure()
    clock.advance(300)
    assert breaker.try_acquire()
    clock.advance(11)
    assert breaker.state is BreakerState.OPEN


def test_breaker_opens_on_failure_rate_over_the_window(clock: FakeClock) -> None:
    breaker = _breaker(clock, failure_threshold=100)
    for ok in (True, False, True, False, True):
        breaker.record_success() if ok else breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 5 calls < min_calls
    breaker.record_failure()  # 3 failures out of 6 = 50 %
    assert breaker.state is BreakerState.OPEN


# ---- downshift tree ---------------------------------------------------------------------------------

ALL = {"primary": True, "validator": True, "creative": True}


@pytest.mark.parametrize(
    ("requested", "available", "stale", "served", "route", "reason"),
    [
        ("creative", ALL, False, "creative", "models", "as requested"),
        ("creative", {**ALL, "creative": False}, False, "balanced", "models", "creative model"),
        (
            "creative",
            {**ALL, "creative": False, "validator": False},
            False,
            "fast",
            "models",
            "validator model",
        ),
        ("creative", {**ALL, "validator": False}, False, "fast", "models", "validator model"),
        ("balanced", {**ALL, "validator": False}, False, "fast", "models", "validator model"),
        ("fast", {**ALL, "validator": False, "creative": False}, False, "fast", "models", "as requested"),
        ("balanced", {**ALL, "primary": False}, True, "balanced", "stale-cache", "primary model"),
        ("balanced", {**ALL, "primary": False}, False, "fast", "keywords", "primary model"),
        (
            "creative",
            {"primary": False, "validator": False, "creative": False},
            True,
            "creative",
            "stale-cache",
            "all",
        ),
        (
            "creative",
            {"primary": False, "validator": False, "creative": False},
            False,
            "fast",
            "reject",
            "all",
        ),
    ],
)
def test_downshift_tree(
    requested: str, available: dict[str, bool], stale: bool, served: str, route: str, reason: str
) -> None:
    plan = plan_route(requested, available, ALL, stale)  # type: ignore[arg-type]
    assert (plan.served, plan.route) == (served, route)
    assert reason in plan.reason


def test_unpinned_model_counts_as_down() -> None:
    plan = plan_route("creative", ALL, {**ALL, "creative": False}, False)
    assert plan.served == "balanced"
    assert "not pinned" in plan.reason


# ---- cache -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "load", "ttl"),
    [
        (3600, 0.5, 3600),
        (3600, 0.9, 7200),
        (3600, 0.1, 1800),
        (300, 0.5, 300),
        (300, 0.9, 600),
        (300, 0.1, 300),
        (1000, 0.1, 600),
        (60000, 0.95, 86400),
    ],
)
def test_adaptive_ttl(base: float, load: float, ttl: float) -> None:
    assert adaptive_ttl(base, load) == ttl


def test_cache_expiry_stale_reads_and_lru_bound(clock: FakeClock) -> None:
    cache: ResponseCache[str] = ResponseCache(max_entries=2, clock=clock)
    cache.put("a", "A", 10)
    cache.put("b", "B", 10)
    assert cache.get("a") is not None  # a is now most recent
    cache.put("c", "C", 10)
    assert cache.get("b") is None
    assert len(cache) == 2
    clock.advance(11)
    assert cache.get("a") is None
    stale = cache.get("a", allow_stale=True)
    assert stale is not None
    assert stale.stale
    assert stale.value == "A"


def test_cache_key_depends_on_text_mode_language_and_pins() -> None:
    pins = {"primary": "qwen@1"}

    def key(text: str, mode: str = "fast", language: str = "en", pins: dict[str, str] = pins) -> str:
        return cache_key(text, mode, pins, language=language)  # type: ignore[arg-type]

    assert key("Fresh  Citrus") == key("fresh citrus")
    assert key("fresh citrus") != key("fresh citrus", "balanced")
    assert key("fresh citrus") != key("fresh citrus", pins={"primary": "qwen@2"})
    assert key("fresh citrus") != key("fresh citrus", language="ko")


# ---- formula ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "상큼한 꽃향기",
        "strong leather and smoky woods, complex and rich",
        "light aquatic",
        "바닐라 계피 앰버",
    ],
)
def test_heuristic_formula_is_deterministic_and_ifra_compliant(catalog: IngredientCatalog, text: str) -> None:
    brief = keyword_parse(text).brief
    formula = heuristic_formula(brief, catalog)
    assert formula == heuristic_formula(brief, catalog)
    assert sum(formula.values()) == pytest.approx(1.0, abs=1e-4)
    assert check_formula(formula, catalog, concentration_for(brief)).compliant
    families = {catalog.get(i).family for i in formula}
    assert set(brief.ranked_families()[:1]) <= families
    assert any(catalog.get(i).tier == "base" for i in formula)


def test_heuristic_formula_depends_on_relative_weights_only(catalog: IngredientCatalog) -> None:
    # Found by the schema fuzzer: weights this small used to underflow to an all-zero formula (500).
    def brief(citrus: float, woody: float) -> Brief:
        return Brief(
            style="fresh", intensity=0.5, complexity=0.5, note_families={"citrus": citrus, "woody": woody}
        )

    tiny = heuristic_formula(brief(5e-324, 5e-324), catalog)
    assert sum(tiny.values()) == pytest.approx(1.0, abs=1e-4)
    assert tiny == heuristic_formula(brief(1.0, 1.0), catalog)
    assert heuristic_formula(brief(0.2, 0.1), catalog) == heuristic_formula(brief(1.0, 0.5), catalog)


def test_projection_caps_restricted_ingredients(catalog: IngredientCatalog) -> None:
    restricted = catalog.restricted()[0]
    raw = {restricted.id: 0.9, catalog.ids[-1]: 0.1}
    assert not check_formula(raw, catalog, 0.25).compliant
    projected = project_to_ifra(raw, catalog, 0.25)
    assert check_formula(projected, catalog, 0.25).compliant
    assert sum(projected.values()) == pytest.approx(1.0, abs=1e-4)


def test_brief_features_layout(catalog: IngredientCatalog) -> None:
    features = brief_features(keyword_parse("fresh citrus").brief, catalog.families)
    assert len(features) == feature_size(catalog.families)


# ---- validation and hints -----------------------------------------------------------------------------


def test_rule_validation_flags_inconsistencies() -> None:
    loud = Brief(style="floral", intensity=0.9, complexity=0.5, note_families={"floral": 1.0})
    result = validate_brief("a light floral", loud)
    assert not result.valid
    assert any("intensity" in i for i in result.issues)
    assert validate_brief("a strong floral", loud).valid


def test_validator_output_parsing() -> None:
    assert parse_validator_output("garbage") is None
    verdict = parse_validator_output('{"valid": false, "issues": ["too strong"]}')
    assert verdict is not None
    assert not verdict.valid
    assert verdict.issues == ("too strong",)


@pytest.mark.parametrize("text", ["상큼한 꽃향기", "fresh woody amber musk leather powdery spicy"])
def test_template_hints_have_5_to_8_lines_in_the_users_language(text: str) -> None:
    brief = keyword_parse(text).brief
    hints = template_hints(brief)
    assert 5 <= len(hints) <= 8
    assert (brief.language == "ko") == any("\uac00" <= ch <= "\ud7a3" for ch in hints[0])


# ---- config ----------------------------------------------------------------------------------------


def test_config_file_profiles_and_pin_override() -> None:
    document = yaml.safe_load((REPO / "configs" / "llm_ensemble.yaml").read_text())
    prod = resolve_config(document, "prod")
    assert (prod.modes.fast.max_new_tokens, prod.modes.fast.temperature, prod.modes.fast.top_p) == (
        256,
        0.3,
        0.8,
    )
    assert prod.modes.creative.timeout_seconds == 20
    assert prod.queue.max_waiting == 100
    dev = resolve_config(document, "dev")
    assert dev.modes.fast.max_new_tokens == 32
    assert dev.modes.fast.temperature == 0.3
    pin = PinConfig.model_validate(
        {
            "models": {"primary": {"name": "qwen", "source": "/m/q", "revision": "2.5.1"}},
            "modes": {"fast": {"maxNewTokens": 99}},
            "downshift": {"holdSeconds": 42},
            "replicas": 3,
        }
    )
    pinned = resolve_config(document, "prod", pin)
    assert pinned.modes.fast.max_new_tokens == 99
    assert pinned.modes.fast.temperature == 0.3
    assert pinned.downshift.hold_seconds == 42


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="topP"):
        resolve_config({"modes": {"fast": {"topP": 2}}}, "prod")


# ---- admission -------------------------------------------------------------------------------------


async def test_admission_bounds_running_and_waiting() -> None:
    gate = asyncio.Event()
    admission = AdmissionController(max_concurrent=1, max_waiting=1)

    async def hold() -> None:
        async with admission.admit():
            await gate.wait()

    first = asyncio.create_task(hold())
    second = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    assert (admission.running, admission.waiting) == (1, 1)
    with pytest.raises(OverloadedError):
        async with admission.admit():
            pass
    gate.set()
    await asyncio.gather(first, second)
    assert (admission.running, admission.waiting, admission.load) == (0, 0, 0)


# ---- prompts ---------------------------------------------------------------------------------------


def test_the_keyword_hint_line_gives_the_mapping_not_the_words() -> None:
    terms = keyword_parse("상큼한 레몬, strong and simple").terms
    prompt = brief_prompt("상큼한 레몬, strong and simple", "fast", "ko", terms)
    mapping = "상큼한→citrus,fresh; 레몬→citrus; strong→intensity+0.3; simple→complexity-0.3"
    assert f"키워드 힌트: {mapping}\n" in prompt
    assert "Keyword hints:" not in brief_prompt("no dictionary words", "fast", "en", ())


def test_validator_and_creative_prompts_have_every_mode_in_both_languages() -> None:
    korean = keyword_parse("상큼한 꽃향기").brief
    english = keyword_parse("fresh floral").brief
    modes = ("fast", "balanced", "creative")
    for brief in (korean, english):
        validators = {validator_prompt("x", brief, m) for m in modes}  # type: ignore[arg-type]
        creatives = {creative_prompt("x", brief, brief.language, m) for m in modes}  # type: ignore[arg-type]
        assert len(validators) == len(creatives) == 3
    assert "JSON만 답하세요" in validator_prompt("상큼한 꽃향기", korean)
    assert "요청: 상큼한 꽃향기" in validator_prompt("상큼한 꽃향기", korean)
    assert "Answer with JSON only" in validator_prompt("fresh floral", english)
    assert "JSON 문자열 배열" in creative_prompt("상큼한 꽃향기", korean, "ko", "creative")


# ---- validation with the formula check --------------------------------------------------------------


def test_the_formulas_ifra_violations_and_allergens_join_the_validation_issues(
    catalog: IngredientCatalog,
) -> None:
    brief_ok = ValidationResult(True, (), "rules")
    raw = check_formula({"citral": 0.5, "iso_e_super": 0.5}, catalog, 0.2)
    assert raw.violations
    served = check_formula(project_to_ifra({"citral": 0.5, "iso_e_super": 0.5}, catalog, 0.2), catalog, 0.2)
    assert served.compliant
    capped = with_formula_check(brief_ok, raw, served)
    assert capped.valid  # the served formula is safe: the raw violation is reported, not disqualifying
    assert any(i.startswith("ifra: citral") and "capped" in i for i in capped.issues)
    assert {i.split(":")[1].split()[0] for i in capped.issues if i.startswith("allergen:")} == {
        a.allergen for a in served.allergens
    }
    unsafe = with_formula_check(brief_ok, raw, raw)
    assert not unsafe.valid
    assert with_formula_check(brief_ok, served, served.model_copy(update={"allergens": ()})) == brief_ok
