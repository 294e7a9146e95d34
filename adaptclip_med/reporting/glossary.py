"""Plain-language meaning of every column and word of the report (shown beside its tables).

Written for a clinician reading the report without help; notebooks and docs can reuse :data:`GLOSSARY`.
"""

from __future__ import annotations

#: term -> one or two sentences. Order: what a row is, the image metrics, the pixel metrics, decisions.
GLOSSARY: dict[str, str] = {
    "anomaly score": "The number the model gives an image (or a pixel): higher means more unlike the "
                     "normal images it knows. It is not a probability of disease.",
    "k (shots)": "How many normal example images of the same kind the model was shown before scoring "
                 "(k = 0: zero-shot, none).",
    "seed": "Which random draw of the k example images was used. Rows with k ≥ 1 give mean ± std over the "
            "seeds; zero-shot rows are a single run.",
    "n normal / n abnormal": "Test images scored for the row, by their ground-truth label.",
    "n skipped": "Input files left out (unreadable or unusable); skipped.csv lists each with the reason.",
    "Avg": "Class = Avg: the unweighted mean over the classes of a data set; data set = Avg: the mean over "
           "the data sets. Counts on Avg rows are sums.",
    "I-AUROC": "Image level, area under the ROC curve: the chance that a random abnormal image scores "
               "higher than a random normal one (50 % = guessing, 100 % = perfect separation).",
    "I-AUPR": "Image level, area under the precision-recall curve: how clean the list of flagged images "
              "stays as more abnormal images are found; depends on how many abnormal images there are.",
    "I-F1max": "Image level, the best F1 (harmonic mean of precision and sensitivity) over all thresholds.",
    "P-AUROC": "Pixel level AUROC: how well the heat map separates lesion pixels from normal pixels "
               "(needs ground-truth masks).",
    "P-AUPR": "Pixel level area under the precision-recall curve: how much of the hot area of the map is "
              "really lesion; strict when lesions are small.",
    "P-F1max": "Pixel level, the best F1 over all map thresholds.",
    "AUPRO": "Area under the per-region-overlap curve (up to 30 % false-positive pixels): every lesion "
             "counts equally, whatever its size.",
    "sens@95spec": "Sensitivity (abnormal images found) when the threshold is set so that 95 % of normal "
                   "images pass; with a 95 % bootstrap confidence interval.",
    "spec@95sens": "Specificity (normal images passed) when 95 % of abnormal images are found.",
    "operating point": "A threshold on the anomaly score chosen from the normal example images only "
                       "(never the test images); the table names the rule, how many normals it rests on "
                       "and the false-alarm rate it can promise (α). Above it an image is flagged.",
    "false alarm / miss": "A normal image scored above the threshold / an abnormal image scored below it; "
                          "the gallery shows the highest-scored normals and lowest-scored abnormals.",
    "N/A": "Not applicable: the metric cannot be computed for that row (reason under the table), and it "
           "is left out of the averages.",
}

__all__ = ["GLOSSARY"]
