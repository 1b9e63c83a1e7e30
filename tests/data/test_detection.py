"""Detection datasets: the generated sets, box-moving augmentation, TFDS loaders."""

import jax
import numpy as np
import pytest

from nkjax.data import detection, shapes
from nkjax.errors import UserError


def extent(mask):
  """`(x1, y1, x2, y2)` enclosing the True pixels of `[h, w]`, continuous coordinates."""
  ys, xs = np.nonzero(mask)
  return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@pytest.mark.parametrize('name', ['shapes', 'digits_canvas'])
def test_generated_batches_have_the_contract_shapes(name):
  data = detection.load(
    name,
    batch_size=8,
    eval_batch_size=16,
    seed=0,
    num_train=40,
    num_test=20,
    max_boxes=7,
  )
  assert data.num_classes == len(data.class_names) == (5 if name == 'shapes' else 10)
  assert data.example_shape == (128, 128, 3) and (data.num_train, data.num_test) == (
    40,
    20,
  )
  batch = next(data.train_batches(0))
  want = {
    'image': ((8, 128, 128, 3), np.float32), 'boxes': ((8, 7, 4), np.float32),
    'labels': ((8, 7), np.int32), 'box_mask': ((8, 7), np.bool_),
    'difficult': ((8, 7), np.bool_),
  }  # fmt: skip
  for key, (shape, dtype) in want.items():
    assert batch[key].shape == shape and batch[key].dtype == dtype, key
  assert 0 <= batch['image'].min() and batch['image'].max() <= 1
  mask = batch['box_mask']
  assert mask.any(1).all() and (mask.sum(1) <= 6).all() and not batch['difficult'].any()
  # Padding: zeros after the real boxes, label 0.
  assert (np.sort(~mask, axis=1) == ~mask).all()
  assert (batch['boxes'][~mask] == 0).all() and (batch['labels'][~mask] == 0).all()
  boxes = batch['boxes'][mask]
  assert (boxes >= 0).all() and (boxes <= 128).all()
  assert (boxes[:, 2:] > boxes[:, :2]).all()
  labels = batch['labels'][mask]
  assert labels.min() >= 0 and labels.max() < data.num_classes
  evals = list(data.eval_batches())
  assert [b['image'].shape[0] for b in evals] == [16, 16]
  assert sum(b['mask'].sum() for b in evals) == 20


@pytest.mark.parametrize('name', ['shapes', 'digits_canvas'])
def test_generation_is_deterministic_and_a_prefix_of_larger_sets(name):
  small = detection.generate(name, num_examples=10, split='train')
  large = detection.generate(name, num_examples=70, split='train')  # two chunks
  again = detection.generate(name, num_examples=70, split='train')
  other = detection.generate(name, num_examples=10, split='train', data_seed=1)
  test = detection.generate(name, num_examples=10, split='test')
  for key in small:
    np.testing.assert_array_equal(large[key], again[key])
    np.testing.assert_array_equal(small[key], large[key][:10])
  assert not np.array_equal(small['image'], other['image'])
  assert not np.array_equal(small['image'], test['image'])
  assert not np.array_equal(large['image'][:64], large['image'][6:70])  # chunks differ


def test_training_batches_resume_and_depend_on_the_seed_only_through_order():
  kwargs = {'batch_size': 4, 'eval_batch_size': 4, 'num_train': 12, 'num_test': 4}
  a = detection.load('shapes', seed=0, **kwargs)
  b = detection.load('shapes', seed=1, **kwargs)
  it = a.train_batches(0)
  first = [next(it) for _ in range(4)]
  resumed = next(a.train_batches(3))
  for key in first[3]:
    np.testing.assert_array_equal(first[3][key], resumed[key])
  # Another shuffling seed: the same 12 images, another order.
  seen = {
    tuple(sorted(map(bytes, np.concatenate([x['image'] for x in batches]))))
    for batches in (first[:3], [next(b.train_batches(s)) for s in range(3)])
  }
  assert len(seen) == 1


def test_shape_boxes_enclose_exactly_the_pixels_of_the_shape():
  """Without noise, the topmost shape of each image (drawn last, nothing over
  it) is the only region of its exact colour: the box must be the extent of
  that colour's pixels, found independently of the generator's own masks."""
  rng = np.random.default_rng([7])
  out = shapes._generate('shapes', rng, 48, image_size=128, max_boxes=8, noise=0.0)
  for i in range(48):
    top = np.flatnonzero(out['box_mask'][i])[-1]
    x1, y1, x2, y2 = out['boxes'][i, top]
    centre = out['image'][i, int((y1 + y2) / 2), int((x1 + x2) / 2)]
    same = (out['image'][i] == centre).all(-1)
    np.testing.assert_array_equal(extent(same), out['boxes'][i, top], err_msg=str(i))
  sides = np.concatenate(
    [
      out['boxes'][..., 2] - out['boxes'][..., 0],
      out['boxes'][..., 3] - out['boxes'][..., 1],
    ]
  )[np.concatenate([out['box_mask']] * 2)]
  assert 11 <= sides.min() and sides.max() <= 60


def test_digit_boxes_enclose_the_ink_of_the_digit():
  """Every pixel a digit covers at all (its alpha, pasted onto the full image
  separately from the patch the box was measured on) fills its box exactly,
  and the topmost digit's pixels of its exact colour (full ink, found from
  the image alone) lie inside its box."""
  rng = np.random.default_rng([8])
  out = shapes._generate(
    'digits_canvas', rng, 32, image_size=128, max_boxes=8, noise=0.0, return_alpha=True
  )
  for i in range(32):
    valid = np.flatnonzero(out['box_mask'][i])
    for j in valid:
      np.testing.assert_array_equal(extent(out['alpha'][i, j] > 0), out['boxes'][i, j])
    top = valid[-1]
    full = out['alpha'][i, top] == 1
    colour = out['image'][i][full][0]
    inner = extent((out['image'][i] == colour).all(-1))
    box = out['boxes'][i, top]
    assert (inner[:2] >= box[:2]).all() and (inner[2:] <= box[2:]).all()


def test_ground_truth_as_detections_scores_perfectly():
  """The loader's eval pass, collected and turned into the evaluation's ground
  truth, scores AP 1 against itself in both VOC and COCO terms, and padding
  never shows up as an object."""
  from nkjax.data import batching
  from nkjax.metrics import detection as metrics

  data = detection.load(
    'shapes', batch_size=4, eval_batch_size=8, seed=0, num_train=8, num_test=12
  )
  arrays = batching.collect(data.eval_batches())
  gts = detection.ground_truths(arrays)
  assert sum(len(g['labels']) for g in gts) == arrays['box_mask'].sum()
  dets = [{**g, 'scores': np.ones(len(g['labels']))} for g in gts]
  voc = metrics.voc_evaluate(detections=dets, ground_truths=gts, num_classes=5)
  assert voc['map_all'] == 1.0 and voc['num_gt'].sum() == arrays['box_mask'].sum()
  coco = metrics.coco_evaluate(
    detections=dets, ground_truths=gts, num_classes=5,
    image_sizes=[tuple(hw) for hw in arrays['image_size']],
  )  # fmt: skip
  assert coco['AP'] == pytest.approx(1.0)


def test_bad_names_and_sizes_are_one_line_errors():
  with pytest.raises(UserError, match='unknown dataset.*shapes'):
    detection.load('pets', batch_size=2, eval_batch_size=2, seed=0)
  with pytest.raises(UserError, match='image_size'):
    detection.generate('shapes', num_examples=2, split='train', image_size=16)
  with pytest.raises(UserError, match='at least one example'):
    detection.load('shapes', batch_size=2, eval_batch_size=2, seed=0, num_test=0)


@pytest.mark.parametrize('name', ['shapes', 'digits_canvas'])
def test_fewer_box_slots_than_objects_is_an_error_never_a_cut(name):
  # An image holds up to MAX_OBJECTS objects: one slot fewer must refuse, not
  # draw fewer objects or drop some.
  short = detection.MAX_OBJECTS - 1
  with pytest.raises(
    UserError, match=rf'--config.max_boxes={short} .* give --config.max_boxes=6 '
  ) as e:
    detection.generate(name, num_examples=2, split='train', max_boxes=short)
  assert '\n' not in str(e.value)
  out = detection.generate(
    name, num_examples=64, split='train', max_boxes=detection.MAX_OBJECTS
  )
  # The check is not vacuous: some image fills every slot.
  assert out['box_mask'].sum(1).max() == detection.MAX_OBJECTS


# --- augmentation -----------------------------------------------------------


def _scene(n=6, seed=3):
  """Noise-free shapes with each object's alpha as extra image channels, so a
  transform moves the pixels of every shape exactly as it moves the image."""
  rng = np.random.default_rng([seed])
  out = shapes._generate(
    'shapes', rng, n, image_size=64, max_boxes=8, noise=0.0, return_alpha=True
  )
  alpha = np.moveaxis(out['alpha'], 1, -1)  # [n, h, w, k]
  image = np.concatenate([out['image'] / 255.0, alpha], -1).astype(np.float32)
  k = alpha.shape[-1]
  return out, image, k


def test_flip_moves_each_box_onto_its_mirrored_pixels():
  out, image, k = _scene()
  for i in range(len(image)):
    valid = out['box_mask'][i]
    flipped, boxes = detection.flip_horizontal(image[i], out['boxes'][i], valid)
    flipped, boxes = np.asarray(flipped), np.asarray(boxes)
    np.testing.assert_array_equal(flipped, image[i][:, ::-1])
    for j in np.flatnonzero(valid[:k]):
      np.testing.assert_array_equal(extent(flipped[..., 3 + j] > 0), boxes[j])
    assert (boxes[~valid] == 0).all()


def test_flip_inside_a_padded_canvas_mirrors_only_the_content():
  image = np.zeros((8, 10, 1), np.float32)
  image[2:4, 1:3] = 1  # content is 6 wide, padding on the right
  boxes = np.array([[1, 2, 3, 4], [0, 0, 0, 0]], np.float32)
  valid = np.array([True, False])
  flipped, moved = jax.jit(detection.flip_horizontal)(image, boxes, valid, width=6)
  expected = np.zeros_like(image)
  expected[2:4, 3:5] = 1
  np.testing.assert_array_equal(flipped, expected)
  np.testing.assert_array_equal(moved, [[3, 2, 5, 4], [0, 0, 0, 0]])


@pytest.mark.parametrize('scale, offset', [(1.3, (-10.0, -7.0)), (0.7, (5.0, 30.0))])
def test_rescaled_boxes_enclose_the_rescaled_pixels(scale, offset):
  """The alpha of each shape, resampled with the image, thresholded at 1/2,
  must fill its moved box to within a pixel (its edges fall between pixel
  centres); boxes mostly pushed out of the canvas are dropped."""
  out, image, k = _scene(n=12)
  checked = clipped = dropped = 0
  dy, dx = offset
  for i in range(len(image)):
    valid = out['box_mask'][i]
    moved, boxes, visible = jax.jit(detection.rescale)(
      image[i], out['boxes'][i], valid, scale=scale, offset=offset
    )
    moved, boxes, visible = map(np.asarray, (moved, boxes, visible))
    assert moved.shape == image[i].shape
    for j in np.flatnonzero(valid[:k]):
      mask = moved[..., 3 + j] > 0.5
      # Where the canvas cuts a box it is clipped, not shrunk to the pixels
      # left (as every detector's box clipping does): it encloses them.
      unclipped = out['boxes'][i, j] * scale + np.array([dx, dy, dx, dy])
      inside = (unclipped >= 0).all() and (unclipped <= 64).all()
      if visible[j] and inside:
        np.testing.assert_allclose(extent(mask), boxes[j], atol=1.0)
        checked += 1
      elif visible[j]:
        assert (extent(mask)[:2] >= boxes[j][:2] - 1).all()
        assert (extent(mask)[2:] <= boxes[j][2:] + 1).all()
        clipped += 1
      else:
        # Less than half of the moved box is left on the canvas.
        x1, y1, x2, y2 = unclipped
        on = (min(x2, 64) - max(x1, 0)) * (min(y2, 64) - max(y1, 0))
        assert max(min(x2, 64) - max(x1, 0), 0) == 0 or on < 0.5 * (x2 - x1) * (y2 - y1)
        assert (boxes[j] == 0).all()
        dropped += 1
    assert not visible[~valid].any() and (boxes[~valid] == 0).all()
  assert checked >= 10 and clipped + dropped >= 1


def test_augment_keeps_every_surviving_box_on_its_shape_and_padding_inert():
  out, image, k = _scene(n=8, seed=4)
  batch = {
    'image': image, 'boxes': out['boxes'], 'labels': out['labels'],
    'box_mask': out['box_mask'], 'difficult': out['difficult'],
    'image_size': out['image_size'], 'scale': out['scale'],
  }  # fmt: skip
  aug = jax.jit(detection.augment)
  result = jax.tree.map(np.asarray, aug(jax.random.key(0), batch))
  assert result['image'].shape == image.shape and 'scale' in result
  for i in range(len(image)):
    for j in np.flatnonzero(result['box_mask'][i][:k]):
      mask = result['image'][i][..., 3 + j] > 0.5
      np.testing.assert_allclose(extent(mask), result['boxes'][i, j], atol=1.0)
      assert result['labels'][i, j] == out['labels'][i, j]
  assert result['box_mask'].sum() >= 0.7 * out['box_mask'].sum()
  # Garbage in the padded entries changes nothing.
  noisy = dict(batch)
  pad = ~batch['box_mask']
  noisy['boxes'] = np.where(pad[..., None], 37.0, batch['boxes']).astype(np.float32)
  noisy['labels'] = np.where(pad, 3, batch['labels']).astype(np.int32)
  again = jax.tree.map(np.asarray, aug(jax.random.key(0), noisy))
  for key in result:
    np.testing.assert_array_equal(again[key], result[key], err_msg=key)
  # Other keys give other flips and scales.
  other = aug(jax.random.key(1), batch)
  assert not np.array_equal(np.asarray(other['boxes']), result['boxes'])


def test_loader_augment_moves_boxes_with_train_images_and_resumes_exactly():
  kw = dict(batch_size=4, eval_batch_size=4, seed=3, num_train=8, num_test=4)
  plain = detection.load('shapes', **kw)
  aug = detection.load('shapes', augment=True, **kw)
  first = next(plain.train_batches(0))
  steps = aug.train_batches(0)
  a0, a1 = next(steps), next(steps)
  assert {k: v.shape for k, v in a0.items()} == {k: v.shape for k, v in first.items()}
  assert not np.array_equal(a0['image'], first['image'])
  # A box that survives is inside the moved content; boxes pushed out are padding.
  for i in range(4):
    h, w = a0['image_size'][i]
    b = a0['boxes'][i][a0['box_mask'][i]]
    assert (b >= 0).all() and (b[:, [0, 2]] <= w + 1e-3).all()
    assert (b[:, [1, 3]] <= h + 1e-3).all()
    assert (a0['boxes'][i][~a0['box_mask'][i]] == 0).all()
  # The augmented batch is exactly `augment` of the plain one with step 0's key.
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(3), 0), 0)
  again = jax.tree.map(np.asarray, jax.jit(detection.augment)(key, first))
  for key in a0:
    np.testing.assert_allclose(a0[key], again[key], atol=1e-6, err_msg=key)
  # Resuming at step 1 draws what the uninterrupted stream drew.
  resumed = next(aug.train_batches(1))
  for key in a1:
    np.testing.assert_array_equal(resumed[key], a1[key], err_msg=key)
  # Eval batches are never augmented.
  np.testing.assert_array_equal(
    next(aug.eval_batches())['image'], next(plain.eval_batches())['image']
  )


# --- PASCAL VOC and COCO through the real TFDS builders ---------------------
#
# TFDS's mock data draws boxes and labels independently of the images, so
# these tests write tiny VOC and COCO source trees (JPEGs, the devkit's XML,
# COCO's JSON), let the real builders prepare them (only the download is
# replaced by the local folders), and read them back through the loader.

tfds = pytest.importorskip('tensorflow_datasets')
pytest.importorskip('tensorflow')

# Objects as (label, 1-based inclusive xmin, ymin, xmax, ymax, difficult / crowd).
VOC_IMAGES = {
  '000001': ((90, 60), [(14, 11, 21, 40, 70, False), (6, 3, 5, 9, 30, True)]),
  '000002': ((40, 80), [(0, 30, 10, 50, 30, False)]),
  '000003': ((50, 50), [(19, 1, 1, 50, 50, False)]),
}
COCO_IMAGES = {  # (h, w), [(label, x, y, w, h, crowd)]: continuous pixels
  1: ((60, 90), [(0, 10.0, 20.0, 30.0, 20.0, False), (5, 50.0, 5.0, 30.0, 40.0, True)]),
  2: ((40, 80), [(79, 0.0, 0.0, 80.0, 40.0, False)]),
}


def _jpeg(path, hw, rects):
  """A grey image with each rectangle (continuous `x1, y1, x2, y2`) in white."""
  from PIL import Image

  pixels = np.full((*hw, 3), 60, np.uint8)
  for x1, y1, x2, y2 in rects:
    pixels[int(y1) : int(y2), int(x1) : int(x2)] = 250
  Image.fromarray(pixels).save(path, quality=98)


def _voc_tree(root):
  base = root / 'VOCdevkit' / 'VOC2007'
  for sub in ('ImageSets/Main', 'JPEGImages', 'Annotations'):
    (base / sub).mkdir(parents=True)
  from tensorflow_datasets.object_detection import voc

  for image_id, ((h, w), objects) in VOC_IMAGES.items():
    # The devkit's xmin..xmax are 1-based and inclusive: columns xmin-1..xmax-1.
    _jpeg(
      base / 'JPEGImages' / f'{image_id}.jpg', (h, w),
      [(x1 - 1, y1 - 1, x2, y2) for _, x1, y1, x2, y2, _ in objects],
    )  # fmt: skip
    xml = ''.join(
      f'<object><name>{voc._VOC_LABELS[lab]}</name><pose>Unspecified</pose>'
      f'<truncated>0</truncated><difficult>{int(hard)}</difficult><bndbox>'
      f'<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>'
      '</bndbox></object>'
      for lab, x1, y1, x2, y2, hard in objects
    )
    (base / 'Annotations' / f'{image_id}.xml').write_text(
      f'<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth>'
      f'</size>{xml}</annotation>'
    )
  main = base / 'ImageSets' / 'Main'
  (main / 'train.txt').write_text('000001\n000002\n')
  (main / 'val.txt').write_text('000003\n')
  (main / 'test.txt').write_text('000001\n000003\n')


def _coco_tree(root):
  import json

  categories = [{'id': c + 1, 'name': f'class{c}'} for c in range(80)]
  for split, images in (('train2017', COCO_IMAGES), ('val2017', COCO_IMAGES)):
    (root / 'images' / split).mkdir(parents=True)
    info, anns = [], []
    for image_id, ((h, w), objects) in images.items():
      name = f'{image_id:012d}.jpg'
      _jpeg(root / 'images' / split / name, (h, w), [
        (x, y, x + bw, y + bh) for _, x, y, bw, bh, _ in objects
      ])  # fmt: skip
      info.append({'id': image_id, 'file_name': name, 'height': h, 'width': w})
      for label, x, y, bw, bh, crowd in objects:
        anns.append({
          'id': len(anns) + 1, 'image_id': image_id, 'category_id': label + 1,
          'bbox': [x, y, bw, bh], 'area': bw * bh, 'iscrowd': int(crowd),
        })  # fmt: skip
    (root / 'annotations' / 'annotations').mkdir(parents=True, exist_ok=True)
    (root / 'annotations' / 'annotations' / f'instances_{split}.json').write_text(
      json.dumps({'images': info, 'annotations': anns, 'categories': categories})
    )
  (root / 'images' / 'test2017').mkdir(parents=True)
  _jpeg(root / 'images' / 'test2017' / 't.jpg', (20, 20), [])
  (root / 'annotations' / 'annotations' / 'image_info_test2017.json').write_text(
    json.dumps({
      'images': [{'id': 9, 'file_name': 't.jpg', 'height': 20, 'width': 20}],
      'categories': categories,
    })
  )  # fmt: skip


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """A data_dir holding voc/2007 and coco/2017 prepared from the fake trees."""
  root = tmp_path_factory.mktemp('detection_tfds')
  _voc_tree(root / 'voc')
  _coco_tree(root / 'coco')
  local = {
    'test': root / 'voc', 'trainval': root / 'voc',
    **{f'{s}_images': root / 'coco' / 'images' for s in ('train', 'validation', 'test')},
    **{f'{s}_annotations': root / 'coco' / 'annotations' for s in ('train', 'validation', 'test')},
  }  # fmt: skip
  mp = pytest.MonkeyPatch()
  mp.setattr(
    tfds.download.DownloadManager,
    'download_and_extract',
    lambda self, urls: {k: str(local[k]) for k in urls},
  )
  config = tfds.download.DownloadConfig(try_download_gcs=False)
  for name in ('voc/2007', 'coco/2017'):
    tfds.builder(name, data_dir=str(root / 'data')).download_and_prepare(
      download_dir=str(root / 'downloads'), download_config=config
    )
  mp.undo()
  return str(root / 'data')


def _white(image, threshold=0.6):
  return image.mean(-1) > threshold


def test_voc_boxes_are_continuous_pixels_of_the_resized_image(prepared):
  data = detection.load(
    'voc/2007', batch_size=2, eval_batch_size=4, seed=0, data_dir=prepared,
    image_size=120, max_size=200, max_boxes=4,
  )  # fmt: skip
  assert data.num_classes == 20 and data.class_names[14] == 'person'
  assert (data.num_train, data.num_test) == (3, 2)
  assert data.example_shape == (200, 200, 3)
  batch = next(data.eval_batches())  # test split: 000001 then 000003
  assert batch['image'].shape == (4, 200, 200, 3) and batch['mask'].tolist() == [
    1,
    1,
    0,
    0,
  ]
  # 000001 is 90 high, 60 wide: the shorter side 60 -> 120 (x2), the longer
  # 90 -> 180 <= 200.
  np.testing.assert_array_equal(batch['image_size'][:2], [[180, 120], [120, 120]])
  np.testing.assert_allclose(batch['scale'][0], [2.0, 2.0])
  # Devkit (11, 21)-(40, 70) inclusive, 1-based -> [10, 40) x [20, 70) -> x2.
  np.testing.assert_allclose(batch['boxes'][0, 0], [20, 40, 80, 140], atol=1e-3)
  assert batch['labels'][0, 0] == 14 and batch['box_mask'][0].tolist() == [1, 0, 0, 0]
  # The difficult object is kept for the evaluation, but is no training target.
  np.testing.assert_allclose(batch['boxes'][0, 1], [4, 8, 18, 60], atol=1e-3)
  assert batch['difficult'][0].tolist() == [0, 1, 0, 0] and batch['labels'][0, 1] == 6
  # 000003: one box covering the whole image.
  np.testing.assert_allclose(batch['boxes'][1, 0], [0, 0, 120, 120], atol=1e-3)
  # The boxes enclose the white pixels drawn in the JPEG (to a pixel, as
  # resizing blurs the edges), and the canvas is padded with zeros.
  white = _white(batch['image'][0])
  np.testing.assert_allclose(
    extent(white & ~_box_mask(batch['boxes'][0, 1], 200)), batch['boxes'][0, 0], atol=1
  )
  assert batch['image'][0, 180:].max() == 0 and batch['image'][0, :, 120:].max() == 0
  train = next(data.train_batches(0))
  assert train['image'].shape == (2, 200, 200, 3) and 'mask' not in train


def _box_mask(box, side):
  m = np.zeros((side, side), bool)
  x1, y1, x2, y2 = np.round(box).astype(int)
  m[y1:y2, x1:x2] = True
  return m


def test_coco_crowd_boxes_are_ignored_and_long_sides_are_capped(prepared):
  data = detection.load(
    'coco/2017', batch_size=2, eval_batch_size=2, seed=0, data_dir=prepared,
    image_size=80, max_size=120,
  )  # fmt: skip
  assert data.num_classes == 80 and (data.num_train, data.num_test) == (2, 2)
  batch = next(data.eval_batches())
  assert batch['boxes'].shape == (2, 128, 4)  # COCO's default padding
  # Image 1 is 60x90: 80/60 would make the long side 120 <= 120: factor 4/3.
  # Image 2 is 40x80: 80/40 = 2 would give 160 > 120, so 120/80 = 1.5.
  np.testing.assert_array_equal(batch['image_size'], [[80, 120], [60, 120]])
  np.testing.assert_allclose(
    batch['boxes'][0, 0], np.array([10, 20, 40, 40]) * 4 / 3, atol=1e-3
  )
  np.testing.assert_allclose(
    batch['boxes'][0, 1], np.array([50, 5, 80, 45]) * 4 / 3, atol=1e-3
  )
  assert batch['box_mask'][0, :3].tolist() == [True, False, False]
  assert batch['difficult'][0, :3].tolist() == [False, True, False]
  np.testing.assert_allclose(batch['boxes'][1, 0], [0, 0, 120, 60], atol=1e-3)
  assert batch['labels'][1, 0] == 79
  white = _white(batch['image'][0]) & ~_box_mask(batch['boxes'][0, 1], 120)
  np.testing.assert_allclose(extent(white), batch['boxes'][0, 0], atol=1)
  # The evaluation's view: crowd regions come along as difficult (ignored).
  gts = detection.ground_truths(batch)
  assert len(gts[0]['labels']) == 2 and gts[0]['difficult'].tolist() == [False, True]


def test_process_rows(prepared):
  kwargs = {'batch_size': 2, 'eval_batch_size': 2, 'seed': 0, 'data_dir': prepared}
  half = detection.load(
    'coco/2017', process_index=1, process_count=2, max_boxes=2, **kwargs
  )
  batch = next(half.eval_batches())
  assert batch['image'].shape[0] == 1 and batch['boxes'].shape == (1, 2, 4)
  assert batch['labels'][0, 0] == 79  # the second process reads the second image


@pytest.mark.parametrize('name', ['voc/2007', 'coco/2017'])
def test_more_objects_than_max_boxes_is_refused_before_any_batch(prepared, name):
  # Image 1 of both fake sets has two objects (one difficult / crowd, which
  # the evaluation needs as well): one slot must be refused, naming the count.
  kwargs = {'batch_size': 2, 'eval_batch_size': 2, 'seed': 0, 'data_dir': prepared}
  with pytest.raises(
    UserError, match=r'--config.max_boxes=1 is under the 2 .* --config.max_boxes=2 '
  ) as e:
    detection.load(name, max_boxes=1, **kwargs)
  assert '\n' not in str(e.value)
  batch = next(detection.load(name, max_boxes=2, **kwargs).eval_batches())
  assert (batch['box_mask'] | batch['difficult']).sum(1).max() == 2


def test_the_experiment_writes_nothing_when_voc_boxes_do_not_fit(prepared, tmp_path):
  import os
  import sys

  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
  import detection as experiment

  config = experiment.get_config('smoke')
  config.dataset, config.data_dir, config.max_boxes = 'voc/2007', prepared, 1
  with pytest.raises(UserError, match='max_boxes'):
    experiment.main(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_unprepared_dataset_offline_names_the_offline_options(tmp_path, monkeypatch):
  def no_network(self, *args, **kwargs):
    raise ConnectionError('no route to host')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', no_network)
  with pytest.raises(
    UserError, match=r'--config.dataset=shapes.*--config.data_dir'
  ) as e:
    detection.load(
      'voc/2007', batch_size=2, eval_batch_size=2, seed=0, data_dir=str(tmp_path)
    )
  assert '\n' not in str(e.value)
