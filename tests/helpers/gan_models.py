"""A hand-built generator and segmenter, loadable as ``tests/helpers/gan_models.py:toy_generator`` and
``tests/helpers/gan_models.py:door_segmenter``; their differentiable variant (``soft_generator``,
``soft_segmenter``: a third unit that paints a blotch, softmax probabilities) is at the end.

z ``[N, 16, 1, 1]`` is read as a 4x4 map ``a``. The image (one pixel per cell of the 4x4 map) is sky
(blue) in rows 0-1 and wall (grey) in rows 2-3. Layer ``feat`` [N, 2, 4, 4]: unit 0 is
relu(a - 1.5) on the wall rows (positive in the few wall cells where a > 1.5) and unit 1 is always 0.
The generator paints a red door wherever unit 0 is positive on a wall row, never in the sky: unit 0
paints doors, and only where a door makes sense; unit 1 paints nothing. The segmenter labels sky
(1), wall (2) and door (3) by colour.
"""

import torch
from torch import nn

from unitscope.models import ModelInfo, attach_info
from unitscope.segment import Segmenter

SKY, WALL, DOOR = (0.2, 0.4, 0.9), (0.5, 0.5, 0.5), (0.9, 0.1, 0.1)


class ToyGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()
        wall = torch.zeros(1, 1, 4, 4)
        wall[..., 2:, :] = 1
        self.register_buffer("wall", wall)
        self.register_buffer("sky", torch.tensor(SKY).view(1, 3, 1, 1))
        self.register_buffer("grey", torch.tensor(WALL).view(1, 3, 1, 1))
        self.register_buffer("red", torch.tensor(DOOR).view(1, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = z.reshape(z.shape[0], 1, 4, 4)
        feat = self.feat(torch.cat([torch.relu(a - 1.5) * self.wall, torch.zeros_like(a)], 1))
        door = (feat[:, :1] > 0).float() * self.wall
        background = self.sky + self.wall * (self.grey - self.sky)
        return background + door * (self.red - background)


def toy_generator(checkpoint=None, pretrained=None) -> nn.Module:
    return attach_info(
        ToyGenerator(),
        ModelInfo(
            name="toy-generator",
            input_size=(16, 1, 1),
            kind="generator",
            output_size=(3, 4, 4),
            default_layers=["feat"],
        ),
    )


class DoorSegmenter(Segmenter):
    categories = ("object",)
    labels = {"object": [("sky", 1), ("wall", 2), ("door", 3)]}

    def segment(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        r, g, b = images[:, 0], images[:, 1], images[:, 2]
        out = torch.zeros(r.shape, dtype=torch.long)
        out[b > 0.7] = 1
        out[(r - 0.5).abs().lt(0.05) & (b - 0.5).abs().lt(0.05)] = 2
        out[(r > 0.7) & (g < 0.3)] = 3
        return {"object": out}


def door_segmenter(device: str = "cpu") -> Segmenter:
    return DoorSegmenter()


# -- a differentiable variant (ACE and artifact units; tests/gan/test_gan_ace.py's docstring) ----------
BLOT = (0.9, 0.1, 0.9)  # the soft generator's magenta blotch, a colour the soft segmenter cannot place


class SoftDoorGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()
        wall = torch.zeros(1, 1, 4, 4)
        wall[..., 2:, :] = 1
        self.register_buffer("wall", wall)
        for name, colour in (("sky", SKY), ("grey", WALL), ("red", DOOR), ("blot", BLOT)):
            self.register_buffer(name, torch.tensor(colour).view(1, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = z.reshape(z.shape[0], 1, 4, 4)
        feat = self.feat(
            torch.cat([torch.relu(a - 1.5) * self.wall, torch.ones_like(a), torch.relu(a - 1.0) * (1 - self.wall)], 1)
        )
        door = (4 * feat[:, :1]).clamp(0, 1) * self.wall
        blot = (4 * feat[:, 2:3]).clamp(0, 1) * (1 - self.wall)
        image = self.sky + self.wall * (self.grey - self.sky) + 0 * feat[:, 1:2]
        image = image + door * (self.red - image)
        return image + blot * (self.blot - image)


def soft_generator() -> nn.Module:
    return attach_info(
        SoftDoorGenerator(),
        ModelInfo(
            name="soft-door", input_size=(16, 1, 1), kind="generator", output_size=(3, 4, 4), default_layers=["feat"]
        ),
    )


class SoftSegmenter(Segmenter):
    categories = ("object",)
    labels = {"object": [("sky", 1), ("wall", 2), ("door", 3)]}

    def probabilities(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        colours = torch.tensor([SKY, WALL, DOOR]).view(1, 3, 3, 1, 1)
        dist = ((images.unsqueeze(1) - colours) ** 2).sum(2)  # [N, 3, H, W]
        logits = torch.cat([torch.full_like(dist[:, :1], -20 * 0.3), -20 * dist], 1)
        return {"object": logits.softmax(1)}

    def segment(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"object": self.probabilities(images)["object"].argmax(1)}


def soft_segmenter(device: str = "cpu") -> SoftSegmenter:
    return SoftSegmenter()


def door_scene_buffers(module: nn.Module, short: str, tall: str) -> None:
    """The 4x4 door scene's constants as buffers of ``module``: ``wall`` (rows 1-3), the door slots
    ``short`` ((2, 0) and (3, 0)) and ``tall`` ((1, 2) to (3, 2)), ``spill`` (sky cells (0, 0) and
    (0, 1)), the colours ``sky``, ``grey`` and ``red`` [1, 3, 1, 1]; and ``feat``, the identity layer
    whose units paint them."""
    module.feat = nn.Identity()
    wall, door_short, door_tall, spill = (torch.zeros(1, 1, 4, 4) for _ in range(4))
    wall[..., 1:, :] = 1
    door_short[..., 2:, 0] = 1
    door_tall[..., 1:, 2] = 1
    spill[..., 0, :2] = 1
    for name, t in (("wall", wall), (short, door_short), (tall, door_tall), ("spill", spill)):
        module.register_buffer(name, t)
    for name, colour in (("sky", SKY), ("grey", WALL), ("red", DOOR)):
        module.register_buffer(name, torch.tensor(colour).view(1, 3, 1, 1))


# -- two door units, one that paints only doors and one that also turns sky into wall (specific ACE) ----------
class TwoDoorGenerator(nn.Module):
    """Image 4x4: sky in row 0, wall in rows 1-3; layer ``feat`` [N, 2, 4, 4] is 1 everywhere for
    both units. Unit 0 paints doors at (2, 0) and (3, 0), nothing else; unit 1 paints doors at
    (1, 2), (2, 2) and (3, 2) and turns sky cells (0, 0) and (0, 1) into wall. Unit 1 removes more
    doors when switched off, but also changes the sky (by +100%); unit 0 changes only door and wall."""

    def __init__(self) -> None:
        super().__init__()
        door_scene_buffers(self, "door0", "door1")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(z.reshape(z.shape[0], 1, 4, 4)) + 0 * z.reshape(z.shape[0], 1, 4, 4)
        feat = self.feat(torch.cat([ones, ones], 1))
        u0, u1 = feat[:, :1], feat[:, 1:2]
        image = self.sky + self.wall * (self.grey - self.sky)
        image = image + u1 * self.spill * (self.grey - image)
        door = u0 * self.door0 + u1 * self.door1
        return image + door * (self.red - image)


def two_door_generator() -> nn.Module:
    return attach_info(
        TwoDoorGenerator(),
        ModelInfo(
            name="two-door", input_size=(16, 1, 1), kind="generator", output_size=(3, 4, 4), default_layers=["feat"]
        ),
    )
