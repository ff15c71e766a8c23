"""The zoo's datasets: example counts from MANIFEST.md, spot checks against the
raw files, encodings, split names and errors.

Prepared data live in the default cache ($ZOO_CACHE_DIR, else ~/.cache/zoo), so
only the first run on a machine pays the cold prepare (~30 s for everything);
later runs reuse it. Only the error tests use throwaway directories.
"""

import collections
import csv
import functools
import gzip
import math

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

import zoo.data
from zoo.data import builders
from zoo.data.builders.base import read_lines

DATA = zoo.data.data_root()

pytestmark = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"offline data folder {DATA} missing (set ZOO_DATA_DIR)"
)


@functools.cache
def examples(name, split):
    """load_examples once per session; tests must not mutate the result."""
    return zoo.data.load_examples(name, split)


def raw_lines(relative, encoding="utf-8"):
    """Lines of a raw file under the data root, read independently of zoo.data."""
    path = DATA / relative
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode(encoding).split("\n")[:-1]


# Counts from shared/data/MANIFEST.md.
EXPECTED_COUNTS = {
    "atis": {"train": 4478, "validation": 500, "test": 893},
    "snips": {"train": 13084, "validation": 700, "test": 700},
    "conll2003": {"train": 14041, "dev": 3250, "test": 3453},
    "multi30k": {"train": 29000, "validation": 1014, "test": 1000},
    "ud_english_lines": {"train": 3457, "dev": 1118, "test": 1121},
    "flickr8k": {"train": 6000, "validation": 1000, "test": 1000},
    "ptb": {"train": 42068, "validation": 3370, "test": 3761},
    "trec": {"train": 5452, "test": 500},
    "sst2": {"train": 6920, "validation": 872, "test": 1821},
    "sst1": {"train": 8544, "validation": 1101, "test": 2210},
    "mr": {"train": 10662},
    "subj": {"train": 10000},
    "cr": {"train": 3775},
    "mpqa": {"train": 10606},
    "imdb": {"train": 25000, "test": 25000},
    "melbourne_min_temp": {"train": 3650},
    "melbourne_max_temp": {"train": 3650},
    "beijing_pm25": {"train": 43824},
    "sp500": {"train": 4697},
    "sunspots": {"train": 2820},
    "airline_passengers": {"train": 144},
}


def test_every_dataset_is_listed_and_counted():
    assert sorted(EXPECTED_COUNTS) == zoo.data.list_datasets()


@pytest.mark.parametrize(
    "name,split,count",
    [
        (name, split, count)
        for name, splits in EXPECTED_COUNTS.items()
        for split, count in splits.items()
    ],
)
def test_example_counts_match_manifest(name, split, count):
    assert len(examples(name, split)) == count
    assert zoo.data.builder(name).info.splits[split].num_examples == count


@pytest.mark.parametrize("name", ["atis", "snips"])
@pytest.mark.parametrize(
    "split,folder", [("train", "train"), ("validation", "valid"), ("test", "test")]
)
def test_slot_filling_matches_raw_files(name, split, folder):
    tokens = raw_lines(f"{name}/{folder}/seq.in")
    slots = raw_lines(f"{name}/{folder}/seq.out")
    intents = raw_lines(f"{name}/{folder}/label")
    got = examples(name, split)
    assert [e["tokens"] for e in got] == [line.split() for line in tokens]
    assert [e["slots"] for e in got] == [line.split() for line in slots]
    assert [e["intent"] for e in got] == intents
    assert all(len(e["tokens"]) == len(e["slots"]) for e in got)


def test_atis_keeps_unseen_and_multi_intent_labels_as_strings():
    train_intents = {e["intent"] for e in examples("atis", "train")}
    test_intents = {e["intent"] for e in examples("atis", "test")}
    assert len(train_intents) == 21
    assert "atis_day_name" in test_intents - train_intents
    assert sum("#" in e["intent"] for e in examples("atis", "train")) == 23
    assert len({tag for e in examples("atis", "train") for tag in e["slots"]}) == 120


def test_snips_intents_and_token_totals():
    assert {e["intent"] for e in examples("snips", "train")} == {
        "AddToPlaylist",
        "BookRestaurant",
        "GetWeather",
        "PlayMusic",
        "RateBook",
        "SearchCreativeWork",
        "SearchScreeningEvent",
    }
    assert sum(len(e["tokens"]) for e in examples("snips", "train")) == 117700


@pytest.mark.parametrize("split,tokens", [("train", 203621), ("dev", 51362), ("test", 46435)])
def test_conll2003_token_totals_and_iob1(split, tokens):
    got = examples("conll2003", split)
    assert sum(len(e["tokens"]) for e in got) == tokens
    assert all(len(e["tokens"]) == len(e["pos"]) == len(e["chunks"]) == len(e["ner"]) for e in got)
    assert not any(t == "-DOCSTART-" for e in got for t in e["tokens"])
    assert {tag for e in got for tag in e["ner"]} <= {
        "O",
        "I-PER",
        "I-ORG",
        "I-LOC",
        "I-MISC",
        "B-PER",
        "B-ORG",
        "B-LOC",
        "B-MISC",
    }


def test_conll2003_first_sentence():
    first = examples("conll2003", "train")[0]
    assert first["tokens"] == [
        "EU",
        "rejects",
        "German",
        "call",
        "to",
        "boycott",
        "British",
        "lamb",
        ".",
    ]
    assert first["ner"] == ["I-ORG", "O", "I-MISC", "O", "O", "O", "I-MISC", "O", "O"]  # IOB1 kept
    assert first["pos"][:2] == ["NNP", "VBZ"]
    assert first["chunks"][:2] == ["I-NP", "I-VP"]


@pytest.mark.parametrize("split,words", [("train", 64684), ("dev", 21637), ("test", 19984)])
def test_ud_english_lines_word_totals(split, words):
    got = examples("ud_english_lines", split)
    assert sum(len(e["tokens"]) for e in got) == words
    assert all(len(e["tokens"]) == len(e["upos"]) == len(e["xpos"]) for e in got)


def test_ud_english_lines_first_sentence_and_tagset():
    first = examples("ud_english_lines", "train")[0]
    assert first == {
        "text": "Show All",
        "tokens": ["Show", "All"],
        "upos": ["VERB", "PRON"],
        "xpos": ["IMP", "TOT-PL"],
    }
    assert len({tag for e in examples("ud_english_lines", "train") for tag in e["upos"]}) == 17


@pytest.mark.parametrize(
    "split,stem", [("train", "train"), ("validation", "val"), ("test", "test_2016_flickr")]
)
def test_multi30k_is_line_aligned_with_raw_files(split, stem):
    got = examples("multi30k", split)
    for language in ("en", "de", "fr"):
        lines = raw_lines(f"multi30k/raw/{stem}.{language}.gz")
        for index in (0, len(lines) // 2, len(lines) - 1):
            assert got[index][language] == lines[index].strip()
    images = raw_lines(f"multi30k/image_splits/{stem}.txt")
    assert [e["image/filename"] for e in got] == [name.strip() for name in images]


def test_trec_labels_agree_with_tfds_style_labels():
    info = zoo.data.builder("trec").info.features
    label_names = info["label"].names
    coarse_names = info["label-coarse"].names
    fine_names = info["label-fine"].names
    for split in ("train", "test"):
        raw = raw_lines(f"sentence_classification/TREC.{split}.raw", "latin-1")
        for example, line in zip(examples("trec", split), raw):
            coarse, fine = line.split(" ", 1)[0].split(":")
            assert label_names[example["label"]] == coarse_names[example["label-coarse"]] == coarse
            assert fine_names[example["label-fine"]] == fine
    assert examples("trec", "test")[0] == {
        "text": "How far is it from Denver to Aspen ?",
        "label": 5,
        "label-coarse": 4,
        "label-fine": 40,
    }


@pytest.mark.parametrize(
    "name,file,counts",
    [
        ("mr", "rt-polarity.all", [5331, 5331]),
        ("subj", "subj.all", [5000, 5000]),
        ("cr", "custrev.all", [1368, 2407]),
        ("mpqa", "mpqa.all", [7294, 3312]),
        ("sst1", "stsa.fine.train", [1092, 2218, 1624, 2322, 1288]),
    ],
)
def test_sentence_labels_match_raw_files(name, file, counts):
    split = "train"
    lines = raw_lines(f"sentence_classification/{file}", "latin-1")
    got = examples(name, split)
    assert [e["label"] for e in got] == [int(line.split(" ", 1)[0]) for line in lines]
    assert np.bincount([e["label"] for e in got]).tolist() == counts


def test_sentence_label_names():
    def names(name):
        return zoo.data.builder(name).info.features["label"].names

    assert names("subj") == ["subjective", "objective"]  # 0 = subjective, per MANIFEST
    assert names("sst2") == ["negative", "positive"]
    assert names("trec") == ["DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"]
    assert len(names("sst1")) == 5


def test_sst2_has_glue_layout_and_utf8_text():
    second = examples("sst2", "test")[1]
    assert second["label"] == 0 and second["idx"] == 1
    assert second["sentence"] == second["text"]
    assert second["text"].endswith("like rancid crème brûlée .")


@pytest.mark.parametrize(
    "name,file", [("mr", "rt-polarity.all"), ("subj", "subj.all"), ("trec", "TREC.train.all")]
)
def test_latin1_files_decode_without_losing_or_splitting_lines(name, file):
    raw = (DATA / "sentence_classification" / file).read_bytes().split(b"\n")[:-1]
    got = examples(name, "train")
    assert len(got) == len(raw)
    for example, line in zip(got, raw):
        text = line.split(b" ", 1)[1].strip()
        # cp1252 round trip: every byte survived, and no U+0085 line break crept in.
        assert example["text"].encode("cp1252") == text
        assert "\x85" not in example["text"] and "\n" not in example["text"]
    if name == "mr":
        assert sum(e["text"].count("…") for e in got) == 23  # the file's 23 bytes 0x85


def test_read_lines_splits_on_newline_only(tmp_path):
    path = tmp_path / "mixed.txt.gz"
    path.write_bytes(gzip.compress(b"1 a\x85b \x96 c\r\n0 \xe9t\xe9\n\n0 last"))
    assert read_lines(path) == ["1 a…b – c", "0 été", "", "0 last"]


def test_imdb_matches_csv_and_tfds_layout():
    for split in ("train", "test"):
        with gzip.open(
            DATA / "imdb" / f"{split}.csv.gz", "rt", encoding="utf-8", newline=""
        ) as file:
            rows = list(csv.DictReader(file))
        got = examples("imdb", split)
        for index in (0, 12499, 12500, 24999):
            assert got[index] == {"text": rows[index]["text"], "label": int(rows[index]["label"])}
        assert np.bincount([e["label"] for e in got]).tolist() == [12500, 12500]
    assert zoo.data.builder("imdb").info.features["label"].names == ["neg", "pos"]
    assert examples("imdb", "train")[0]["text"].startswith("Bromwell High is a cartoon comedy.")


@pytest.mark.parametrize(
    "split,tokens", [("train", 929589), ("validation", 73760), ("test", 82430)]
)
def test_ptb_token_stream(split, tokens):
    stream = zoo.data.ptb_tokens(split)
    assert len(stream) == tokens
    assert stream.count("<eos>") == EXPECTED_COUNTS["ptb"][split]
    assert stream[-1] == "<eos>"


def test_ptb_token_ids_and_vocabulary():
    ids, vocabulary = zoo.data.ptb_token_ids("validation")
    assert len(vocabulary) == 10000 and "<eos>" in vocabulary and "<unk>" in vocabulary
    assert ids.dtype == np.int32 and ids.shape == (73760,)
    first_line = raw_lines("ptb/ptb.valid.txt.gz")[0].split() + ["<eos>"]
    assert [vocabulary[i] for i in ids[: len(first_line)]] == first_line


def test_timeseries_rows_dates_and_missing_values():
    melbourne = examples("melbourne_min_temp", "train")
    assert melbourne[0] == {"date": "1981-01-01", "Temp": pytest.approx(20.7)}
    assert melbourne[-1]["date"] == "1990-12-31"
    sp500 = examples("sp500", "train")
    assert (sp500[0]["date"], sp500[-1]["date"]) == ("2000-01-03", "2018-08-31")
    assert sp500[0]["Open"] == pytest.approx(1469.25) and sp500[0]["Volume"] == 931800000.0
    beijing = examples("beijing_pm25", "train")
    assert sum(math.isnan(row["pm2.5"]) for row in beijing) == 2067
    assert beijing[-1]["date"] == "2014-12-31 23:00" and beijing[-1]["cbwd"] == "NW"
    assert beijing[-1]["Iws"] == pytest.approx(249.85)
    assert examples("airline_passengers", "train")[0] == {"date": "1949-01", "Passengers": 112.0}
    assert examples("sunspots", "train")[-1]["date"] == "1983-12"
    assert len(examples("melbourne_max_temp", "train")[0]) == 2


def test_flickr8k_images_and_captions_follow_split_files():
    token_lines = raw_lines("flickr8k/Flickr8k.token.txt")
    captions = collections.defaultdict(list)
    for line in token_lines:
        key, caption = line.split("\t")
        captions[key.rsplit("#", 1)[0]].append(caption)
    for split, file in [
        ("train", "trainImages"),
        ("validation", "devImages"),
        ("test", "testImages"),
    ]:
        names = raw_lines(f"flickr8k/Flickr_8k.{file}.txt")
        got = examples("flickr8k", split)
        assert [e["image/filename"] for e in got] == names
        assert all(e["captions"] == captions[e["image/filename"]] for e in got)
        assert all(len(e["captions"]) == 5 for e in got)
    first = examples("flickr8k", "train")[0]
    assert first["image"] == (DATA / "flickr8k" / "images" / first["image/filename"]).read_bytes()
    assert first["captions"][0] == "A black dog is running after a white dog in the snow ."


def test_flickr8k_tf_data_decodes_images():
    example = next(iter(zoo.data.load("flickr8k", "test").take(1)))
    assert tuple(example["image"].shape) == (224, 224, 3)
    assert example["captions"].shape == (5,)


def test_tf_data_and_python_examples_agree():
    via_tf_data = [
        {key: value.numpy() for key, value in example.items()}
        for example in zoo.data.load("atis", "validation")
    ]
    via_python = examples("atis", "validation")
    assert len(via_tf_data) == len(via_python)
    for tensor_example, python_example in zip(via_tf_data, via_python):
        assert tensor_example["intent"].decode() == python_example["intent"]
        assert [t.decode() for t in tensor_example["tokens"]] == python_example["tokens"]


def test_split_aliases_and_slicing():
    assert zoo.data.load_examples("atis", "dev") == examples("atis", "validation")
    assert len(zoo.data.load_examples("conll2003", "validation")) == 3250
    assert zoo.data.load_examples("atis", "test[:2]+validation[-1:]") == (
        examples("atis", "test")[:2] + examples("atis", "validation")[-1:]
    )
    assert zoo.data.builder("imdb_reviews").name == "imdb"
    assert zoo.data.builder("glue/sst2").builder_config.name == "sst2"


def test_second_load_reuses_prepared_data():
    examples("ptb", "test")  # prepared by now
    assert zoo.data.builder("ptb").is_prepared()


def test_kfold_splits_are_deterministic_partitions():
    folds = builders.kfold_splits(10662, k=10, seed=0)
    assert len(folds) == 10
    held_out = np.concatenate([test for _, test in folds])
    assert sorted(held_out.tolist()) == list(range(10662))
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 10662
        assert len(test) in (1066, 1067)
    again = zoo.data.kfold_splits(10662, k=10, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = zoo.data.kfold_splits(10662, k=10, seed=1)
    assert not np.array_equal(folds[0][1], other[0][1])
    with pytest.raises(ValueError):
        zoo.data.kfold_splits(5, k=10)


def test_unknown_dataset_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'conll2003'"):
        zoo.data.load("conll", "train")


def test_wrong_split_lists_valid_ones():
    with pytest.raises(ValueError, match="Valid splits: train, test"):
        zoo.data.load("trec", "validation")
    with pytest.raises(ValueError, match="Valid splits: train, validation, test"):
        zoo.data.load_examples("atis", "tset")


def test_missing_data_folder_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "no-data-here"))
    with pytest.raises(zoo.data.MissingDataError, match="ZOO_DATA_DIR") as error:
        zoo.data.load("atis", "train")
    assert str(tmp_path / "no-data-here" / "atis") in str(error.value)
    assert isinstance(error.value, FileNotFoundError)


@pytest.mark.parametrize("name", ["atis", "trec", "ptb"])
def test_online_path_prepares_from_downloaded_files(name, tmp_path, monkeypatch):
    """Without a local folder, download=True fetches each source URL (faked here
    with the local copies, so the test stays offline) and yields the same data."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "no-data-here"))
    dataset_builder = zoo.data.builder(name, download=True)
    sources = dataset_builder._source_files(dataset_builder.builder_config)
    local_copy = {
        url: DATA / dataset_builder.FOLDER / relative for relative, url in sources.values()
    }
    fetched = []

    def fake_download(self, urls):
        fetched.extend(urls.values())
        return {key: epath.Path(local_copy[url]) for key, url in urls.items()}

    monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
    split = dataset_builder.split_names()[-1]
    assert zoo.data.load_examples(name, split, download=True) == examples(name, split)
    assert sorted(fetched) == sorted(local_copy)
    assert all(url.startswith("https://") for url in fetched)


def test_settings_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "c"))
    assert zoo.data.data_root() == tmp_path
    assert zoo.data.cache_dir() == tmp_path / "c"
    assert zoo.data.builder("atis").data_dir.startswith(str(tmp_path / "c"))
    monkeypatch.delenv("ZOO_DATA_DIR")
    assert zoo.data.data_root().parts[-2:] == ("shared", "data")
