from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from artisan_common.catalog import EU_ALLERGENS, CatalogError, load_catalog
from artisan_common.ifra import check_formula


def test_repository_catalog_is_valid_and_about_sixty_ingredients() -> None:
    catalog = load_catalog()
    assert 55 <= len(catalog) <= 75
    assert {"citrus", "floral", "woody", "musk", "gourmand"} <= set(catalog.families)
    for name in (
        "oakmoss_extract",
        "citral",
        "eugenol",
        "coumarin",
        "isoeugenol",
        "cinnamal",
        "bergamot_oil",
    ):
        assert catalog.get(name).ifra_max_percent is not None, name
    assert all(i.id in EU_ALLERGENS for i in catalog if i.allergen)
    assert catalog.index(catalog.ids[3]) == 3
    assert catalog.get("vanillin").tier == "base"
    assert catalog.get("lemon_oil").tier == "top"


def test_load_catalog_is_cached_by_path(tmp_path: Path) -> None:
    assert load_catalog() is load_catalog()


def test_config_dir_env_var_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ingredients.yaml").write_text(
        yaml.safe_dump(
            {
                "families": ["citrus"],
                "ingredients": [{"id": "x", "name": "X", "family": "citrus", "volatility": 1}],
            }
        )
    )
    monkeypatch.setenv("ARTISAN_CONFIG_DIR", str(tmp_path))
    assert load_catalog().ids == ("x",)


@pytest.mark.parametrize(
    ("ingredient", "expected"),
    [
        ({"id": "x", "name": "X", "family": "nope", "volatility": 0.5}, r"ingredients\[0\].family"),
        ({"id": "x", "name": "X", "family": "citrus", "volatility": 1.5}, "ingredients.0.volatility"),
        ({"id": "x", "name": "X", "family": "citrus", "volatility": 0.5, "allergen": True}, "EU 26"),
        (
            {"id": "x", "name": "X", "family": "citrus", "volatility": 0.5, "contains": {"sugar": 0.1}},
            "contains.sugar",
        ),
    ],
)
def test_invalid_catalog_names_the_field(
    tmp_path: Path, ingredient: dict[str, object], expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"families": ["citrus"], "ingredients": [ingredient]}))
    with pytest.raises(CatalogError, match=expected):
        load_catalog(path)


def test_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("oakmoss", "compliant"),
    [(0.004, True), (0.005, True), (0.010, False)],
)
def test_ifra_worked_example(oakmoss: float, compliant: bool) -> None:
    catalog = load_catalog()
    report = check_formula({"oakmoss_extract": oakmoss, "vanillin": 1 - oakmoss}, catalog, concentration=0.2)
    assert report.compliant is compliant
    if not compliant:
        (violation,) = report.violations
        assert violation.ingredient == "oakmoss_extract"
        assert violation.limit_percent == 0.1
        assert violation.actual_percent == pytest.approx(0.2)
        assert report.total_excess == pytest.approx(1.0)


def test_allergens_above_labelling_threshold_sum_over_sources() -> None:
    catalog = load_catalog()
    # 10 % lemon oil (65 % limonene) + 5 % limonene in a 20 % concentrate.
    report = check_formula(
        {"lemon_oil": 0.10, "limonene": 0.05, "vanillin": 0.85}, catalog, concentration=0.2
    )
    limonene = next(a for a in report.allergens if a.allergen == "limonene")
    assert limonene.actual_percent == pytest.approx((0.10 * 0.65 + 0.05) * 20)
    assert set(limonene.sources) == {"lemon_oil", "limonene"}
    tiny = check_formula({"coumarin": 1e-6, "vanillin": 1.0}, catalog, concentration=0.2)
    assert [a.allergen for a in tiny.allergens] == []  # 2e-5 % is below 0.001 %
    rinse = check_formula(
        {"coumarin": 0.001, "vanillin": 1.0}, catalog, concentration=0.2, product_type="rinse_off"
    )
    assert rinse.labelling_threshold_percent == 0.01
    assert rinse.allergens[0].allergen == "coumarin"


def test_proportions_are_normalized_and_bad_input_refused() -> None:
    catalog = load_catalog()
    # 0.012 / 3.012 of the concentrate at 20 % is 0.080 % oakmoss: under the 0.1 % limit.
    assert check_formula({"vanillin": 3, "oakmoss_extract": 0.012}, catalog).compliant
    assert check_formula({"vanillin": 1, "oakmoss_extract": 0.012}, catalog).compliant is False
    assert check_formula({"vanillin": 6, "oakmoss_extract": 0.024}, catalog) == check_formula(
        {"vanillin": 3, "oakmoss_extract": 0.012}, catalog
    )
    with pytest.raises(KeyError, match="unknown ingredient 'unobtainium'"):
        check_formula({"unobtainium": 1}, catalog)
    with pytest.raises(ValueError, match="finite number"):
        check_formula({"vanillin": -1}, catalog)
    with pytest.raises(ValueError, match="positive proportion"):
        check_formula({"vanillin": 0}, catalog)
    with pytest.raises(ValueError, match="concentration"):
        check_formula({"vanillin": 1}, catalog, concentration=0)
