-- Differentially private jobs: the privacy facts of the result (ε and δ
-- charged, budget left, mechanisms and noise scales), fixed at submission.
ALTER TABLE jobs ADD COLUMN dp_json TEXT;
